"""Claims as strong as their proof, in a rehearsal: a delivery proven only by a stand-in reads as a rehearsal, SMTP
never claims more than the relay's acceptance (the stakeholder notification included), and a restart that loads a new
credential is recorded as a restart, with its downtime window in the auditor's summary."""

from __future__ import annotations

import re
from pathlib import Path

from rotation.core.config import default_config
from tests.harness import SuiteRunner, read_evidence

# The providers whose API proves acceptance, not delivery: in staging their stand-ins prove the rest.
ACCEPTANCE_ONLY = [c.type for c in default_config().credentials if c.provider in ("smtp", "whatsapp")]


def verdicts(folder: Path) -> dict[str, list[str]]:
    """Every `verdict` an evidence item states, by item name."""
    found: dict[str, list[str]] = {}
    for e in read_evidence(folder):
        value = e.get("value")
        if e.get("type") == "evidence" and isinstance(value, dict) and "verdict" in value:
            found.setdefault(str(e["name"]), []).append(str(value["verdict"]))
    return found


def overclaims(folder: Path) -> list[str]:
    """Verdicts of a staging run that say delivered without saying it was a stand-in, and any `delivered: true`."""
    bad = [f"{name}: {v}" for name, vs in verdicts(folder).items() for v in vs
           if re.search(r"(?<!un)delivered\b", v) and "not proven" not in v and "stand-in" not in v]
    bad += [str(e["name"]) for e in read_evidence(folder)
            if isinstance(e.get("value"), dict) and e["value"].get("delivered") is True]  # type: ignore[attr-defined]
    return bad


def test_rehearsed_provider_deliveries_read_as_rehearsals_and_a_restart_as_downtime(suite: SuiteRunner) -> None:
    run = suite.run("-m", f"scheduled and ({' or '.join(ACCEPTANCE_ONLY)})", timeout_s=900)
    assert run.returncode == 0 and run.run_folder is not None, run.output[-3000:]
    folder = run.run_folder
    assert overclaims(folder) == []
    tests = verdicts(folder)["test message"]
    assert len(tests) == len(ACCEPTANCE_ONLY) == 2, tests
    assert all(v.startswith("rehearsal: delivered to the stand-in") for v in tests), tests
    restarts = [e for e in read_evidence(folder) if e.get("name") == "application restarted"]
    assert len(restarts) == 2 and all(str(e["value"]["downtime"]).startswith("yes")  # type: ignore[index]
                                      for e in restarts)
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (folder / "index.html").read_text()))
    assert len(re.findall(r"\(restart command\) to \S+ \S+ \(healthy on the new credential\): [\d.]+ s", page)) == 2


def test_the_stakeholder_notification_claims_acceptance_by_the_relay_only(suite: SuiteRunner) -> None:
    run = suite.run("-m", "emergency", "-k", "unauthorized or notify or audit_the_incident", timeout_s=900)
    assert run.returncode == 0 and run.run_folder is not None, run.output[-3000:]
    folder = run.run_folder
    assert overclaims(folder) == []
    found = verdicts(folder)
    assert found["notification delivery"] == ["accepted by the relay (250); delivery not proven"]
    assert found["relay mailbox"] == ["rehearsal: delivered to the stand-in's mailbox for every stakeholder"]
    report = (folder / "incident-report.md").read_text()
    assert "- accepted by the relay " in report and "(SMTP proves acceptance, not delivery)" in report
    assert "- delivered " not in report


def test_an_overclaim_is_found(tmp_path: Path) -> None:
    """The check above can fail: a staging verdict saying delivered with nothing but a stand-in behind it."""
    (tmp_path / "evidence.jsonl").write_text(
        '{"type":"evidence","name":"test message","value":{"verdict":"delivered (the mailbox holds it)"}}\n'
        '{"type":"evidence","name":"notification delivery","value":{"delivered":true}}\n'
        '{"type":"evidence","name":"test message","value":{"verdict":"accepted by Meta; delivery not proven"}}\n')
    assert overclaims(tmp_path) == ["test message: delivered (the mailbox holds it)", "notification delivery"]
