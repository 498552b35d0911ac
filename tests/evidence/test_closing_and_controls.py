"""What a run prints at its end is what its signed evidence holds; a control's status says what the run can claim."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rotation.core.config import default_config
from rotation.core.proof import NoEvidence, NotApplicable
from rotation.emergency.incident import IncidentRecord
from rotation.evidence.controls import load_catalog
from rotation.evidence.recorder import ScenarioRecord
from rotation.evidence.summary import ControlResult, RunContext
from rotation.hygiene import practices
from rotation.hygiene.checks import AppFiles
from rotation_pytest.emergency import closing_lines
from tests.evidence.project import run, run_folder

CLOSING = '''
pytest_plugins = ["rotation_pytest.options", "rotation_pytest.evidence"]


def pytest_sessionfinish(session):
    from rotation_pytest.evidence import closing_summary

    closing_summary(session.config, "incident figures", ["twilio_token  time-to-revoke 2.0 s",
                                                         "stakeholders notified: NO"], source="the incident record")
'''


def test_what_the_run_prints_at_its_end_is_in_the_signed_evidence(pytester: pytest.Pytester,
                                                                   project: Callable[..., Path]) -> None:
    root = project()
    pytester.makeconftest(CLOSING)
    result = run(pytester)
    result.stdout.fnmatch_lines(["*incident figures*", "twilio_token  time-to-revoke 2.0 s",
                                 "stakeholders notified: NO", "*evidence*"])
    folder = run_folder(root)
    entries = [json.loads(line) for line in (folder / "evidence.jsonl").read_text().splitlines()]
    [item] = [e for e in entries if e.get("name") == "printed at the end: incident figures"]
    assert item["value"] == ["twilio_token  time-to-revoke 2.0 s", "stakeholders notified: NO"]
    assert "Printed at the end of the run" in (folder / "index.html").read_text()


def test_the_emergency_closing_lines_say_who_was_not_notified() -> None:
    record = IncidentRecord()
    outcome = record.begin("twilio_token", "sha256:old")
    outcome.revoked_at = outcome.started_at + dt.timedelta(seconds=2)
    lines = closing_lines(record)
    assert lines[0].startswith("twilio_token") and "time-to-revoke    2.0 s" in lines[0]
    assert lines[-1] == "stakeholder notification: NOT SENT"


def test_change_management_is_satisfied_only_by_an_approved_live_run() -> None:
    catalog = load_catalog()
    passed = ScenarioRecord("n", "s", "f", "f.feature", 1, ["SOC2-CC8.1", "PCI-3.7.5"], status="passed")

    def status(control: str, context: RunContext) -> str:
        return ControlResult(catalog.controls[control], [passed], context).status

    assert status("SOC2-CC8.1", RunContext("staging", "bob", "CHG-1")) == "rehearsed"
    assert status("SOC2-CC8.1", RunContext("live", None, None)) == "not assessed"
    assert status("SOC2-CC8.1", RunContext("live", "bob", "CHG-1")) == "satisfied"
    assert status("PCI-3.7.5", RunContext("staging")) == "rehearsed"
    assert status("PCI-3.7.5", RunContext("live", "bob", "CHG-1")) == "satisfied"


def test_the_git_checks_do_not_apply_without_a_git_repository(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("X=1\n")
    files = AppFiles(tmp_path, tmp_path / ".env", "nobody")
    with pytest.raises(NotApplicable, match="is not a git repository"):
        practices.require_ignored(files, NoEvidence())
    with pytest.raises(NotApplicable, match="is not a git repository"):
        practices.require_not_in_history(files, default_config(), NoEvidence())
