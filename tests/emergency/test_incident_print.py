"""Issue 24 item 6: the incident report in the print, and the access review's personal data masked there.

One staging emergency run (the Twilio token compromised, detected ten minutes before the run; an intruder's access
planted in the review window; the operator's incident notes with root cause, preventive measures and the
security-measures review) renders index.html. The auditor's summary must carry, whole: every event of the timeline
in the print's one UTC format, each credential's time to revoke and to restore from --detected-at against the
one-hour target, the access review's findings (count and each), root cause, every preventive measure and each
security-measures row (area, who, when, outcome). The check is shown to fail when any one part is missing (negative
control). The intruder's e-mail and IP address are masked in index.html and whole in evidence.jsonl."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from markupsafe import escape

from rotation.core.config import default_config
from rotation.evidence.auditor import stamp
from rotation.evidence.html import utc_stamps
from rotation.evidence.incident import EARLIER_FOLDERS, INCIDENT_ITEM
from rotation.evidence.masking import Masker
from rotation.evidence.pdf import find_chromium
from staging.postgres import StagingServer
from tests.emergency.test_emergency_command import REVOKE_STEP, StandInLive, stand_in_live  # noqa: F401 (fixture)
from tests.harness import SuiteRun, SuiteRunner, newest_run_folder, read_evidence

TWILIO = default_config().credential("twilio").type
INTRUDER, INTRUDER_IP = "mallory@intruder.example", "203.0.113.66"  # tests/sabotage.py: emergency:intruder-access
NOTES = {
    "root_cause": "Twilio auth token committed to a public repository by a build script",
    "preventive_measures": ["Secret scanning on every push", "Build scripts read tokens from the vault only"],
    "security_review": [
        {"area": "firewall rules", "who": "Dana Okafor", "when": "2026-11-25 10:40 UTC",
         "outcome": "egress to the SMS gateway only; no change needed"},
        {"area": "access controls", "who": "Lee Brandt", "when": "2026-11-25 11:05 UTC",
         "outcome": "two stale support accounts disabled"},
        {"area": "monitoring", "who": "Dana Okafor", "when": "2026-11-25 11:20 UTC",
         "outcome": "alert on Twilio API use from new IPs added"},
    ],
}
DETECTED_BEFORE_RUN = dt.timedelta(minutes=10)


@pytest.fixture(scope="module")
def incident_run(pg: StagingServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[SuiteRun, dt.datetime]:
    workdir = tmp_path_factory.mktemp("incident-print")
    notes = workdir / "incident-notes.yaml"
    notes.write_text(yaml.safe_dump(NOTES))
    detected = (dt.datetime.now(dt.UTC) - DETECTED_BEFORE_RUN).replace(microsecond=0)
    run = SuiteRunner(pg.admin_dsn, workdir).run(
        "-m", "emergency", f"--compromised={TWILIO}", f"--detected-at={detected.isoformat()}",
        f"--incident-notes={notes}", "--evidence-pdf=auto", sabotage="emergency:intruder-access")
    assert run.run_folder is not None, run.output[-4000:]
    return run, detected


def incident_item(folder: Path) -> dict[str, object]:
    (item,) = [e for e in read_evidence(folder) if e["type"] == "evidence" and e["name"] == INCIDENT_ITEM]
    value = item["value"]
    assert isinstance(value, dict)
    return value


def cell(text: str) -> str:
    """A text as the page holds it: HTML-escaped, its times in the print's one UTC format (utc_stamps)."""
    return str(escape(utc_stamps(text)))


def expected_parts(record: dict[str, object], detected: dt.datetime) -> dict[str, str]:
    """Each part of the incident report, as the print must show it whole (a masked finding as masked)."""
    mask = Masker.keeping(r["who"] for r in NOTES["security_review"])  # type: ignore[union-attr]
    parts: dict[str, str] = {}
    for n, event in enumerate(record["timeline"], start=1):  # type: ignore[arg-type]
        parts[f"timeline event {n}"] = f"<td>{stamp(event['at'])}</td><td>{cell(mask(event['event']))}</td>"
    for row in record["credentials"]:  # type: ignore[union-attr]
        name = row["credential"]
        revoked = dt.datetime.fromisoformat(row["revoked at"])
        restored = dt.datetime.fromisoformat(row["restored at"])
        assert row["clock from"] == detected.isoformat(timespec="milliseconds"), row
        assert (revoked - detected) >= DETECTED_BEFORE_RUN and row["revoke target"] == "met", row
        parts[f"{name} revoked at"] = f"<td>{stamp(revoked)}</td>"
        parts[f"{name} time to revoke"] = f"{row['time to revoke']} <span class=\"badge passed\">met</span>"
        parts[f"{name} restored at"] = f"<td>{stamp(restored)}</td>"
        parts[f"{name} time to restore"] = f"{row['time to restore']} <span class=\"badge passed\">met</span>"
    parts["detected at"] = f"<td>{stamp(detected)}</td>"
    findings = record["access review"]["findings"]  # type: ignore[index]
    parts["findings count"] = f"Access review: {len(findings)} finding"
    for n, finding in enumerate(findings, start=1):
        parts[f"finding {n}"] = f"<li>{cell(mask(finding))}</li>"
    parts["root cause"] = f"<p>{cell(str(NOTES['root_cause']))}</p>"
    for n, measure in enumerate(NOTES["preventive_measures"], start=1):  # type: ignore[arg-type]
        parts[f"preventive measure {n}"] = f"<li>{cell(measure)}</li>"
    for r in NOTES["security_review"]:  # type: ignore[union-attr]
        parts[f"security review: {r['area']}"] = "".join(f"<td>{cell(r[k])}</td>" for k in ("area", "who", "when",
                                                                                               "outcome"))
    return parts


def missing_from(page: str, parts: dict[str, str]) -> list[str]:
    return [name for name, text in parts.items() if text not in page]


def summary_of(page: str) -> str:
    """The auditor's summary pages (the details follow on a new page)."""
    return page.split('<section class="details">', 1)[0]


def test_the_print_carries_the_incident_report_whole(incident_run: tuple[SuiteRun, dt.datetime]) -> None:
    run, detected = incident_run
    assert run.run_folder is not None
    record = incident_item(run.run_folder)
    assert [r["credential"] for r in record["credentials"]] == [TWILIO], record  # type: ignore[union-attr]
    assert record["access review"]["findings"], "the planted intrusion was not found"  # type: ignore[index]
    assert re.fullmatch(r"\S+ \S+", record["root cause"] or "") is None  # the operator's sentence, not a default
    page = summary_of((run.run_folder / "index.html").read_text())
    parts = expected_parts(record, detected)
    assert len(parts) > 20 and not missing_from(page, parts), missing_from(page, parts)
    assert "+00:00" not in page.split('id="incident"', 1)[1], "a time outside the print's one UTC format"


@pytest.mark.parametrize("drop", ["timeline event 1", f"{TWILIO} time to revoke", f"{TWILIO} time to restore",
                                  "findings count", "finding 1", "root cause", "preventive measure 2",
                                  "security review: monitoring"])
def test_the_check_fails_when_a_part_is_missing(incident_run: tuple[SuiteRun, dt.datetime], drop: str) -> None:
    """Negative control: the same page with one part taken out is caught, naming that part."""
    run, detected = incident_run
    assert run.run_folder is not None
    parts = expected_parts(incident_item(run.run_folder), detected)
    page = summary_of((run.run_folder / "index.html").read_text()).replace(parts[drop], "")
    assert drop in missing_from(page, parts)


def occurrences(folder: Path, name: str) -> Callable[[str], bool]:
    text = (folder / name).read_text()
    return lambda value: value in text


def test_personal_data_is_masked_in_the_print_and_whole_in_the_sealed_evidence(
        incident_run: tuple[SuiteRun, dt.datetime]) -> None:
    run, _ = incident_run
    assert run.run_folder is not None
    in_print, in_evidence = occurrences(run.run_folder, "index.html"), occurrences(run.run_folder, "evidence.jsonl")
    assert in_evidence(INTRUDER) and in_evidence(INTRUDER_IP), "the sealed evidence lost the finding's data"
    assert not in_print(INTRUDER) and not in_print(INTRUDER_IP), "personal data in clear in the print"
    assert in_print("m***@intruder.example") and in_print("203.0.113.x"), "the masked finding is not in the print"
    assert in_print("Dana Okafor"), "the security review's reviewer is not named"
    pdf = run.run_folder / "report.pdf"
    if find_chromium() is None or shutil.which("pdftotext") is None:
        pytest.skip("the print itself (report.pdf) needs chromium and pdftotext; index.html was checked")
    assert pdf.exists(), "Chromium was found but the run made no report.pdf"
    text = subprocess.run(["pdftotext", "-raw", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert INTRUDER not in text and INTRUDER_IP not in text and "203.0.113.x" in text, text[-2000:]


def test_the_rerun_after_a_kill_names_the_killed_runs_folder_with_its_digest_and_verdict(
        stand_in_live: StandInLive) -> None:  # noqa: F811
    """One incident, one record: a run killed after the revocation (its folder sealed from its journal by the rerun),
    then the same command; the rerun's signed folder names the killed run's folder, the SHA-256 of its manifest.json
    and its verdict."""
    killed = stand_in_live.command({"PYTEST_ADDOPTS": "-p tests.faults", "ROTATION_TEST_KILL_AFTER": REVOKE_STEP})
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-3000:]
    resumed = stand_in_live.command()
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-5000:]
    newest = newest_run_folder(stand_in_live.reports)
    assert newest is not None and stand_in_live.verify(newest).returncode == 0
    (sealed,) = [p.parent for p in stand_in_live.reports.glob("*/manifest.json")
                 if p.parent != newest and not p.parent.is_symlink()]
    manifest = (sealed / "manifest.json").read_bytes()
    (row,) = incident_item(newest)[EARLIER_FOLDERS]  # type: ignore[misc]
    assert row == {"run id": json.loads(manifest)["run_id"], "folder": sealed.name,
                   "manifest sha256": hashlib.sha256(manifest).hexdigest(),
                   "verdict": json.loads(manifest)["verdict"]}, row
    assert row["verdict"] != "PASSED", "a killed run's folder cannot pass"
    page = (newest / "index.html").read_text()
    assert sealed.name in page and hashlib.sha256(manifest).hexdigest() in page
    # beside this run's verdict, the auditor reads that it covers one run, and where the incident stands
    scope = page.split('id="incident-scope">', 1)[1].split("</p>", 1)[0]
    assert scope.startswith("The verdict covers this run only. The incident CHG-") and "has 2 runs" in scope, scope
    assert f"says <strong>{incident_item(newest)['status']}</strong>" in scope, scope
