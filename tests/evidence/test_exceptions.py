"""An exception a procedure records and goes on with (rotation.core.proof.record_exception: values no key opens, left
as found) makes the verdict INCOMPLETE, never PASSED, and the verdict's reasons name what it left; a failure still
makes it FAILED."""

from __future__ import annotations

from rotation.core.proof import record_exception
from rotation.evidence.controls import load_catalog
from rotation.evidence.recorder import Recorder, ScenarioRecord
from rotation.evidence.summary import Summary

LINE = "crm_client_preferences.email_encrypted: 3 values no key opens (client_id=a, b, c)"


def _run(status: str, *, exception: bool) -> Summary:
    recorder = Recorder()
    recorder.begin_scenario(ScenarioRecord(nodeid="n", name="Scheduled rotation", feature="f", feature_file="f",
                                           line=1, tags=["scheduled"]))
    recorder.begin_step("Then", "the values no key opens ... are found", 2)
    if exception:
        record_exception(recorder, "values no key opens, left as found", [LINE], {"count": 3}, source="test")
    recorder.end_step(status)
    recorder.current_scenario.status = status  # type: ignore[union-attr]
    recorder.end_scenario()
    return Summary.of(recorder, load_catalog())


def test_a_passed_run_with_an_exception_is_incomplete_naming_it() -> None:
    summary = _run("passed", exception=True)
    assert summary.verdict == "INCOMPLETE"
    assert any(LINE in reason and "values no key opens, left as found" in reason
               for reason in summary.verdict_reasons()), summary.verdict_reasons()


def test_without_an_exception_the_same_run_passes() -> None:
    assert _run("passed", exception=False).verdict == "PASSED"


def test_a_failure_outranks_an_exception() -> None:
    assert _run("failed", exception=True).verdict == "FAILED"
