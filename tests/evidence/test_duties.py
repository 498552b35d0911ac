"""Issue 23 item 2, separation of duties: a live run records requester, approver, operator, the OS account and the
change id; an approver equal to the operator is refused before anything runs unless the configuration allows
self-approval, and then the evidence says so; a run with no declared operator says its performer is only the OS
account."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from rotation.core.config import default_config
from rotation.core.duties import People, os_user
from tests.evidence.project import run, run_folder
from tests.evidence.test_auditor import write_key
from tests.harness import read_evidence


def live(tmp_path: Path, *, approver: str, operator: str = "alice") -> tuple[str, ...]:
    key = tmp_path / "signing.pem"
    if not key.exists():
        write_key(key)
    return ("--target=live", f"--operator={operator}", f"--approver={approver}", "--requester=carol",
            "--change-id=CHG-77", f"--signing-key={key}")


def self_approval_config(tmp_path: Path, allowed: bool) -> Path:
    from importlib import resources

    text = resources.files("rotation.core").joinpath("rotation.toml").read_text()
    assert "allow_self_approval = false" in text
    path = tmp_path / "rotation.toml"
    path.write_text(text.replace("allow_self_approval = false", f"allow_self_approval = {str(allowed).lower()}"))
    return path


def run_entry(root: Path) -> dict[str, object]:
    [entry] = [e for e in read_evidence(run_folder(root)) if e["type"] == "run"]
    return entry


@pytest.mark.parametrize("approver", ["alice", "ALICE", "alice@example.org"])
def test_an_approver_equal_to_the_operator_is_refused_before_anything_runs(
        pytester: pytest.Pytester, project: Callable[..., Path], tmp_path: Path, approver: str) -> None:
    root = project()
    result = run(pytester, *live(tmp_path, approver=approver))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = "\n".join(result.errlines)
    assert f"the approver ({approver}) is the operator (alice)" in errors
    assert "allow_self_approval" in errors
    assert not (root / "reports").exists(), "a refused run must leave nothing (no journal, no run folder)"
    assert "passed" not in result.stdout.str()


def test_a_different_approver_runs_and_the_evidence_names_everyone(
        pytester: pytest.Pytester, project: Callable[..., Path], tmp_path: Path) -> None:
    root = project()
    result = run(pytester, *live(tmp_path, approver="bob"))
    result.assert_outcomes(passed=3)
    entry = run_entry(root)
    assert (entry["requester"], entry["approver"], entry["operator"], entry["change_id"]) == (
        "carol", "bob", "alice", "CHG-77")
    assert entry["os_user"] == os_user() and entry["operator_declared"] is True
    assert entry["duty_notes"] == []
    page = (run_folder(root) / "index.html").read_text()
    result.stdout.fnmatch_lines(["who: change record CHG-77; requested by carol; approved by bob; performed by alice; "
                                 f"OS account {os_user()}"])
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())  # the summary's words, whatever its layout
    assert "Requester carol" in text and f"OS account {os_user()}" in text


def test_self_approval_allowed_by_the_configuration_runs_and_the_evidence_says_so(
        pytester: pytest.Pytester, project: Callable[..., Path], tmp_path: Path) -> None:
    root = project()
    config = self_approval_config(tmp_path, allowed=True)
    run(pytester, *live(tmp_path, approver="alice"), f"--config={config}").assert_outcomes(passed=3)
    [note] = run_entry(root)["duty_notes"]  # type: ignore[misc]
    assert note.startswith("self-approved: the approver (alice) is the operator; allowed by [duties] "
                           "allow_self_approval = true in ") and str(config) in note
    assert "self-approved" in (run_folder(root) / "index.html").read_text()


def test_a_staging_run_without_a_declared_operator_says_its_performer_is_an_os_account(
        pytester: pytest.Pytester, project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROTATION_OPERATOR", raising=False)
    root = project()
    run(pytester).assert_outcomes(passed=3)
    entry = run_entry(root)
    assert entry["operator"] == os_user() and entry["operator_declared"] is False
    assert any("is the OS account the tool ran under, not necessarily a person" in n
               for n in entry["duty_notes"])  # type: ignore[union-attr]
    assert f"{os_user()} (OS account; no operator declared)" in (run_folder(root) / "index.html").read_text()


def test_the_rule_itself() -> None:
    rules = default_config()
    people = People("carol", "Bob@example.org", "bob", True, "root", "CHG-1")
    assert people.self_approved and people.refusals(rules.duties, rules.source)
    assert not People("carol", "dave", "bob", True, "root", "CHG-1").refusals(rules.duties, rules.source)
