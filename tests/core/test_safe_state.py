"""The rule that decides where a DB key rotation stands (rotation.db_key.safe_state), the record of the run that
stopped the app (rotation.core.app_control), and signals held while a write must finish (rotation.core.signals)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from rotation.core import app_control, signals
from rotation.core.state import RotationState
from rotation.db_key import safe_state
from rotation.db_key.reencrypt import JobSummary


def progress(step: str) -> RotationState:
    return RotationState("db_encryption_key", step, "sha256:new" if step != "finish" else None, "sha256:old",  # type: ignore[arg-type]
                         None, "test", "t0", "t1", None, "rotation-1")


def job(rows_done: int, status: str = "running") -> JobSummary:
    return JobSummary(1, "crm_client_preferences", status, rows_done, 40)


@pytest.mark.parametrize(("state", "jobs", "kind"), [
    (None, [], "nothing changed"),
    (progress("finish"), [], "finished"),
    (progress("create"), [], "nothing moved"),
    (progress("set"), [job(0)], "nothing moved"),
    (progress("set"), [job(0), job(0, "abandoned")], "nothing moved"),
    (progress("set"), [job(12)], "data moved"),
    (progress("set"), [job(0, "done")], "data moved"),  # an empty table's job, done
    (progress("test"), [job(40, "done")], "data moved"),
    (progress("set"), None, "unknown"),
])
def test_the_safe_state_follows_from_the_state_and_the_jobs(state: RotationState | None,
                                                           jobs: list[JobSummary] | None, kind: str) -> None:
    assert safe_state.decide(state, jobs) == kind


@pytest.mark.parametrize("kind", ["finished", "nothing changed", "nothing moved", "data moved", "unknown"])
def test_every_safe_state_is_one_line_with_the_next_command(kind: safe_state.Kind) -> None:
    said = safe_state.describe(kind, rotation="r-1", env_key="sha256:old", old_fp="sha256:old", new_fp="sha256:new",
                               app="the app is running", app_ok=True, moved=40,
                               next_command="rotation db-key resume --env-file=/srv/.env")
    assert "\n" not in said.line
    if kind != "finished":
        assert said.line.count("`") == 2 and "rotation db-key " in said.line.split("`")[1]
    if kind in ("nothing moved", "nothing changed"):
        assert "`rotation db-key rotate --env-file=/srv/.env`" in said.line
    if kind == "data moved":
        assert "`rotation db-key resume --env-file=/srv/.env` finishes rotation r-1" in said.line


def test_an_app_that_did_not_start_is_not_called_safe() -> None:
    said = safe_state.describe("nothing moved", rotation="r-1", env_key="sha256:old", old_fp="sha256:old",
                               new_fp="sha256:new", app="the app did not start: exited 1", app_ok=False, moved=None)
    assert not said.reached and said.line.startswith("NOT SAFE YET (a) nothing moved")


def test_the_run_that_stops_the_app_is_recorded_until_it_is_started_healthy(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("A=1\n")
    dead = "http://127.0.0.1:9/health"  # discard port: nothing answers
    commands = app_control.AppCommands(start="true", stop="true", restart="true", reload="", health_url=dead,
                                       health_timeout_s=0.2)
    assert app_control.stopped_by(env_file) is None
    app_control.stop_app(commands, env_file, run_id="run-1", credential="db_encryption_key", operator="alice")
    record = app_control.stopped_by(env_file)
    assert record is not None and (record.run, record.credential, record.operator) == ("run-1", "db_encryption_key",
                                                                                      "alice")
    assert record.pid == os.getpid() and "run run-1 (alice" in record.line()
    assert oct(app_control.stop_record_path(env_file).stat().st_mode & 0o777) == "0o600"
    assert not app_control.start_app(commands, env_file).healthy
    assert app_control.stopped_by(env_file) is not None  # started, but never healthy: the record stays
    failing = app_control.AppCommands(start="false", stop="true", restart="true", reload="", health_url=dead)
    with pytest.raises(app_control.AppControlError):
        app_control.start_app(failing, env_file)
    assert app_control.stopped_by(env_file) is not None


@pytest.mark.skipif(sys.platform != "linux", reason="signals to self")
def test_a_signal_inside_a_deferred_block_waits_for_its_end() -> None:
    assert signals.install()
    try:
        done = []
        with pytest.raises(signals.Interrupted) as stopped:
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("the write finished")
        assert done == ["the write finished"] and stopped.value.signum == signal.SIGTERM
        with signals.shielded():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("settled")
        assert done[-1] == "settled"  # held and dropped: the safe state is reached whatever arrives
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.1) if hasattr(signal, "sigtimedwait") else None
    finally:
        signals.uninstall()
