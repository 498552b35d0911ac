"""Evidence of a killed run: the journal every session writes as it goes, sealed by the next session into a normal
signed run folder; a live session's journal is left alone; a session that ends normally leaves none."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from rotation.evidence.controls import load_catalog
from rotation.evidence.journal import JOURNALS, Journal, JournalingRecorder, journal_path, replay, seal_dead_journals
from rotation.evidence.metadata import RunMetadata
from rotation.evidence.recorder import ScenarioRecord, StepRecord
from rotation.evidence.verify import verify_folder
from tests.evidence.project import FEATURE, run_folder
from tests.harness import PROJECT, read_evidence

KILLED_STEP = "3 values are re-encrypted"


def _kill_after(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, step: str) -> pytest.RunResult:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("ROTATION_TEST_KILL_AFTER", step)
    result = pytester.runpytest_subprocess("-p", "tests.faults", "-p", "no:cacheprovider")
    monkeypatch.delenv("ROTATION_TEST_KILL_AFTER")
    return result


def test_a_session_that_ends_normally_leaves_no_journal(pytester: pytest.Pytester,
                                                        project: Callable[..., Path]) -> None:
    root = project()
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=3)
    assert not list((root / "reports" / JOURNALS).glob("*"))
    assert run_folder(root).is_dir()


def test_a_killed_session_is_sealed_by_the_next_one(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                    project: Callable[..., Path], secret: str) -> None:
    root = project(**{"keyring.feature": FEATURE})
    killed = _kill_after(pytester, monkeypatch, KILLED_STEP)
    assert killed.ret == -9, killed.stdout.str()[-2000:]
    journals = list((root / "reports" / JOURNALS).glob("*.jsonl"))
    assert len(journals) == 1 and oct(journals[0].stat().st_mode & 0o777) == "0o600"
    assert secret.encode() not in journals[0].read_bytes()
    assert not [p for p in (root / "reports").glob("*-staging*")], "a run folder without a sealing session"

    sealer = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "nothing_matches")
    assert "sealed the journal of a session that died" in sealer.stdout.str()
    assert not list((root / "reports" / JOURNALS).glob("*"))
    [folder] = [p for p in (root / "reports").glob("*-staging*") if p.is_dir()]
    assert verify_folder(folder).passed
    entries = read_evidence(folder)
    [scenario] = [e for e in entries if e["type"] == "scenario"]
    assert scenario["status"] == "error"
    assert f"died after step 'When {KILLED_STEP}'" in str(scenario["reason"])
    steps = {e["text"]: e["status"] for e in entries if e["type"] == "step"}
    assert steps == {"a key ring holding client values": "passed", KILLED_STEP: "passed",
                     "3 of 3 values verify under the new key": "not run"}
    assert [e["value"] for e in entries if e["type"] == "evidence" and e["name"] == "re-encryption"] == [{"rows": 3}]
    assert any(e["type"] == "evidence" and e["name"] == "journal sealed" for e in entries)
    assert [e["verdict"] for e in entries if e["type"] == "verdict"] == ["FAILED"]


def _meta() -> RunMetadata:
    return RunMetadata(run_id="run-1", target="staging", operator="op", approver=None, change_id=None,
                       started=dt.datetime.now(dt.UTC))


def _scenario() -> ScenarioRecord:
    return ScenarioRecord(nodeid="t::s", name="s", feature="f", feature_file="f.feature", line=1, tags=["GDPR-32"],
                          steps=[StepRecord("Given", "a", 2), StepRecord("When", "b", 3)])


def test_a_live_sessions_journal_is_left_alone(tmp_path: Path) -> None:
    journal = Journal(journal_path(tmp_path, "run-1"), _meta())
    recorder = JournalingRecorder(journal)
    recorder.begin_scenario(_scenario())
    recorder.begin_step("Given", "a", 2)
    assert seal_dead_journals(tmp_path, load_catalog(), sealed_by="run-2") == []
    assert journal.path.exists()
    journal.close(remove=False)  # the session "dies": its lock goes with it
    [sealed] = seal_dead_journals(tmp_path, load_catalog(), sealed_by="run-2")
    assert not journal.path.exists() and verify_folder(sealed.folder).passed


def test_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    journal = Journal(journal_path(tmp_path, "run-1"), _meta())
    recorder = JournalingRecorder(journal)
    recorder.begin_scenario(_scenario())
    recorder.begin_step("Given", "a", 2)
    recorder.record("item", {"n": 1}, source="here")
    recorder.end_step("passed")
    recorder.begin_step("When", "b", 3)
    journal.close(remove=False)
    with journal.path.open("a") as handle:
        handle.write(json.dumps({"e": "item", "name": "half"})[:20])
    replayed = replay(journal.path)
    [scenario] = replayed.recorder.scenarios
    assert [(s.text, s.status) for s in scenario.steps] == [("a", "passed"), ("b", "running")]
    assert [i.name for i in scenario.steps[0].items] == ["item"]
