"""Issue 23 item 8, second half: a run whose session cannot seal its evidence after the change (its reports folder is
gone by the end, replaced by a file: the preflight checked it before the first change) keeps its journal and says so
with the next command; `rotation evidence seal` then seals it into a signed run folder that says it was sealed late,
by whom, when, and why."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rotation.cli import main as rotation_main
from rotation.evidence.journal import JOURNALS
from rotation.evidence.verify import verify_folder
from tests.evidence.project import run, run_folder
from tests.evidence.test_auditor import write_key
from tests.harness import read_evidence

LOSE_KEY_STEP = '''

import os as _os

from pytest_bdd import then as _then


@_then("the reports folder is lost")
def _lose_reports():
    reports = _os.environ["LOST_REPORTS"]
    _os.rename(reports, reports + ".moved")  # the journal's open file moves with it
    with open(reports, "w") as handle:
        handle.write("not a folder")
'''

LOSING = '''@rotation @SOC2-CC6.1
Feature: The reports folder goes missing during the run

  Scenario: Everything passes, then the reports folder is lost
    Given a key ring holding client values
    When 3 values are re-encrypted
    Then 3 of 3 values verify under the new key
    And the reports folder is lost
'''


def test_a_run_that_cannot_seal_is_sealed_later_and_says_so(pytester: pytest.Pytester, project: Callable[..., Path],
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = project(**{"losing.feature": LOSING})
    with (root / "conftest.py").open("a") as handle:
        handle.write(LOSE_KEY_STEP)
    key = tmp_path / "signing.pem"
    write_key(key)
    reports = root / "reports"
    monkeypatch.setenv("LOST_REPORTS", str(reports))
    result = run(pytester, f"--signing-key={key}", "--operator=alice")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "evidence could not be written: FileExistsError" in out
    assert f"rotation evidence seal --reports-dir={reports}" in out
    [journal] = (root / "reports.moved" / JOURNALS).glob("*.jsonl")
    assert '"e": "seal_failed"' in journal.read_text()

    reports.unlink()  # the folder is back: the custodian seals the journal
    (root / "reports.moved").rename(reports)
    journal = reports / JOURNALS / journal.name
    assert journal.exists() and not (reports / "latest").exists()
    capsys.readouterr()
    code = rotation_main(["evidence", "seal", f"--reports-dir={root / 'reports'}", f"--signing-key={key}",
                          "--operator=bob"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "sealed late:" in printed
    assert not journal.exists()
    folder = run_folder(root)
    assert verify_folder(folder).passed
    [meta] = [e for e in read_evidence(folder) if e["type"] == "run"]
    late = meta["sealed_late"]
    assert isinstance(late, dict)
    assert late["by command"] == "rotation evidence seal" and late["sealed by (operator)"] == "bob"
    assert late["sealed at"] > str(meta["started"]) and "signing key" in late
    assert str(late["why"]).startswith("the session that wrote this journal could not write its run folder at ")
    assert "FileExistsError" in str(late["why"])
    assert meta["operator"] == "alice"  # the run's own operator stays the run's
    [scenario] = [e for e in read_evidence(folder) if e["type"] == "scenario"]
    assert scenario["status"] == "passed"
    assert "Sealed late" in (folder / "index.html").read_text()


def test_nothing_to_seal_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rotation_main(["evidence", "seal", f"--reports-dir={tmp_path}"]) == 0
    assert "no journal to seal" in capsys.readouterr().out
