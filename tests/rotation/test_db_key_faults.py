"""Every failure of `rotation db-key rotate` ends in one of two safe states, said in ONE line with the next command
(issue 21, item 6), and a .env as operators keep it is rotated through (item 7):

    (a) nothing moved   .env holds the old key again, the app is started and proven (probe) on it
    (b) data moved      .env holds the new key, `rotation db-key resume` finishes

Each test breaks the operator's command at the cutover (a signal, a database restart, a start command killed with
SIGKILL, a symlinked .env), asserts the state left (values per key, .env bytes, the app, the run folder, the line),
runs the line's next step and asserts the rotation completes with every value on the new key and nothing stranded.
No path leaves .env holding a key that opens no value once the command has exited (`assert_env_opens_values`).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rotation.core import app_control, envfile, state
from rotation.evidence.verify import verify_folder
from staging.postgres import StagingServer, pg_bindir
from staging.world import probe_config
from tests.faults import BLOCK_BEFORE, BLOCK_FILE
from tests.harness import PROJECT
from tests.rotation.live_crm import ENV_NAME, LiveCrm, RunFolder, live_crm, plaintexts
from tests.rotation.test_db_key_crash import progress

ROWS = 40
CUTOVER = "When all sensitive data is re-encrypted under the new key"
AFTER_CUTOVER = "Then every encrypted value decrypts with the new key to its original plaintext"
STATE_ITEM = "where the rotation stands"


@pytest.fixture
def crm(pg: StagingServer, tmp_path: Path) -> Iterator[LiveCrm]:
    with live_crm(pg.admin_dsn, tmp_path, ROWS) as world:
        world.config = probe_config(tmp_path / "rotation.toml", world.app)  # the app proven by reading a value
        yield world


# --- the operator's command, held at a step ------------------------------------------------------------------------
@dataclasses.dataclass
class HeldRun:
    proc: subprocess.Popen[bytes]
    held: Path
    out: Path

    def release(self) -> None:
        self.held.unlink(missing_ok=True)

    def wait(self, timeout_s: float = 300) -> str:
        self.proc.wait(timeout=timeout_s)
        return self.out.read_text(errors="replace")

    def output(self) -> str:
        return self.out.read_text(errors="replace")


def hold_before(crm: LiveCrm, step: str, tmp_path: Path, name: str = "held") -> HeldRun:
    """Start the operator's command and return once it is held at the start of `step` (`Keyword text`)."""
    held, out = tmp_path / f"{name}.pid", tmp_path / f"{name}.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_TEST_", "PYTEST_ADDOPTS"))}
    env |= {"PYTHONPATH": str(PROJECT), "PYTEST_ADDOPTS": "-p tests.faults", BLOCK_BEFORE: step.split(" ", 1)[1],
            BLOCK_FILE: str(held)}
    with out.open("wb") as sink:
        proc = subprocess.Popen(crm.command(), cwd=PROJECT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not held.exists():
        assert proc.poll() is None, f"the command ended before the step:\n{out.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "the command never reached the step"
        time.sleep(0.1)
    return HeldRun(proc, held, out)


# --- what the tests read back --------------------------------------------------------------------------------------
def last_line(output: str) -> str:
    return [line for line in output.splitlines() if line.strip()][-1]


def next_command(line: str) -> str:
    """The command the line names (between backticks)."""
    return line.split("`")[1]


def settled(run: RunFolder) -> dict[str, object]:
    [found] = [e["value"] for e in run.entries() if e["type"] == "evidence" and e["name"] == STATE_ITEM]
    assert isinstance(found, dict)
    return found


def closing_line(run: RunFolder) -> str:
    [found] = [e["value"] for e in run.entries() if str(e.get("name", "")).endswith("next step")]
    assert isinstance(found, list) and len(found) == 1
    return str(found[0])


def opened(crm: LiveCrm, key: object) -> int:
    """How many values (rows x columns) the key opens."""
    return sum(v is not None for row in plaintexts(crm.dsn, key) for v in row[1:])  # type: ignore[arg-type]


def assert_env_opens_values(crm: LiveCrm) -> None:
    """The key .env holds opens values (never a key that opens nothing while the tool has exited)."""
    assert opened(crm, crm.key_in_env()) > 0, ".env holds a key that opens no value"


def app_healthy(crm: LiveCrm) -> bool:
    return app_control.health(crm.app.health_url).healthy


def run_next(crm: LiveCrm, line: str) -> subprocess.CompletedProcess[str]:
    """The line's next command, as the operator would paste it (this run's own interpreter for `rotation`)."""
    words = shlex.split(next_command(line))
    assert words[:2] == ["rotation", "db-key"] and words[2] in ("resume", "rotate"), words
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_TEST_", "PYTEST_ADDOPTS"))}
    env["PYTHONPATH"] = str(PROJECT)
    return subprocess.run([sys.executable, "-m", "rotation", *words[1:]], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def assert_finished_and_nothing_stranded(crm: LiveCrm, done: subprocess.CompletedProcess[str]) -> None:
    failing = [line for line in done.stdout.splitlines() if line.lstrip().startswith(("FAIL", "CheckFailed", "Lock"))]
    assert done.returncode == 0, "\n".join(failing) + done.stdout[-3000:] + done.stderr[-2000:]
    assert last_line(done.stdout).startswith("DONE: rotation "), last_line(done.stdout)
    crm.assert_rotated()
    assert app_healthy(crm)
    progress = state.load(crm.env_file, "db_encryption_key")
    assert progress is not None and progress.step == "finish" and progress.pending_fp is None
    assert not state.pending_path(crm.env_file, "db_encryption_key").exists()
    assert app_control.stopped_by(crm.env_file) is None, "a record of a stopped app is left"
    with psycopg.connect(crm.dsn) as conn:
        running = conn.execute("SELECT count(*) FROM rotation_runbook.reencrypt_job WHERE status = 'running'")
        assert running.fetchone() == (0,)
        open_stages = conn.execute("SELECT count(*) FROM rotation_runbook.staged_job "
                                   "WHERE phase NOT IN ('done', 'abandoned')")
        assert open_stages.fetchone() == (0,)
    assert verify_folder(crm.folders()[-1].path).passed


# --- (a) nothing moved: a signal at the cutover --------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_at_the_cutover_puts_the_old_key_back_and_the_app_on_it(crm: LiveCrm, tmp_path: Path,
                                                                        signum: int) -> None:
    env_before = crm.env_file.read_bytes()
    run = hold_before(crm, CUTOVER, tmp_path)
    assert crm.key_in_env() != crm.old_key and not app_healthy(crm)  # .env has the new key, the app is stopped
    run.proc.send_signal(signum)
    output = run.wait()
    assert run.proc.returncode not in (0, -signum), output[-3000:]  # handled, not killed by the signal
    line = last_line(output)
    assert line.startswith("SAFE (a) nothing moved: "), output[-3000:]
    assert "Traceback" not in output and "INTERNALERROR" not in output

    assert crm.env_file.read_bytes() == env_before  # the old key again, every byte as before
    assert plaintexts(crm.dsn, crm.old_key) == crm.before  # every value under the old key
    assert app_healthy(crm) and app_control.stopped_by(crm.env_file) is None
    assert_env_opens_values(crm)
    [folder] = crm.folders()
    assert verify_folder(folder.path).passed
    assert folder.scenario()["status"] == "error"
    assert f"during step '{CUTOVER}'" in str(folder.scenario()["reason"])
    where = settled(folder)
    assert where["safe state"] == "nothing moved" and where["reached"] is True and where["next step"] == line
    assert closing_line(folder) == line
    assert [e["name"] for e in folder.entries() if e["type"] == "evidence"].count(".env put back to the old key") == 1

    assert_finished_and_nothing_stranded(crm, run_next(crm, line))


# --- (b) data moved: a signal after the cutover ----------------------------------------------------------------------
def test_sigterm_after_the_cutover_leaves_the_new_key_for_resume(crm: LiveCrm, tmp_path: Path) -> None:
    run = hold_before(crm, AFTER_CUTOVER, tmp_path)
    run.proc.send_signal(signal.SIGTERM)
    output = run.wait()
    line = last_line(output)
    assert line.startswith("SAFE (b) data moved: "), output[-3000:]
    assert "`rotation db-key resume " in line and "the app is stopped" in line

    new_key = crm.key_in_env()
    assert new_key != crm.old_key and plaintexts(crm.dsn, new_key) == crm.before  # every value moved, .env with it
    assert not app_healthy(crm)
    stopped = app_control.stopped_by(crm.env_file)
    assert stopped is not None and stopped.credential == "db_encryption_key"
    assert_env_opens_values(crm)
    [folder] = crm.folders()
    assert settled(folder)["safe state"] == "data moved" and closing_line(folder) == line

    done = run_next(crm, line)
    assert_finished_and_nothing_stranded(crm, done)
    resumed = [e["value"] for e in crm.folders()[-1].entries()
               if e["type"] == "evidence" and e["name"] == "resuming a rotation in progress"]
    assert any("stopped by run " in str(v.get("app", "")) for v in resumed if isinstance(v, dict)), resumed


# --- kill -9 of the app's start command ------------------------------------------------------------------------------
def test_a_start_command_killed_with_sigkill_leaves_data_moved_and_the_next_run_starts_the_app(
        crm: LiveCrm, tmp_path: Path) -> None:
    armed = tmp_path / "kill-the-next-start"
    armed.touch()
    real = crm.app
    once = f"if [ -e {armed} ]; then rm {armed}; kill -9 $$; fi; exec {real.start}"  # SIGKILLed the first time
    crm.app = dataclasses.replace(real, start=f"sh -c {shlex.quote(once)}")
    first = crm.rotate()
    assert first.returncode != 0 and not armed.exists()
    line = last_line(first.stdout)
    assert line.startswith("SAFE (b) data moved: "), first.stdout[-3000:] + first.stderr[-2000:]
    assert not app_healthy(crm) and app_control.stopped_by(crm.env_file) is not None
    assert plaintexts(crm.dsn, crm.key_in_env()) == crm.before
    [folder] = crm.folders()
    failed = [s for s in folder.steps() if s.status == "failed"]
    assert [s.step for s in failed] == ["When the application services are started"], failed
    assert "exited -9" in str(failed[0].error)

    assert_finished_and_nothing_stranded(crm, run_next(crm, line))


# --- a database restart during the cutover ---------------------------------------------------------------------------
@pytest.fixture
def own_cluster() -> Iterator[object]:
    from staging.postgres import PrivateCluster, reap_orphan_clusters

    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries: a private cluster is needed to restart the database")
    reap_orphan_clusters()
    cluster = PrivateCluster(bindir, {})
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def pg_ctl(cluster: object, action: str) -> None:
    c = cluster
    args = ["pg_ctl", "-D", str(c.data), "-l", str(c.log), "-w", "-t", "60"]  # type: ignore[attr-defined]
    if action == "start":
        opts = {"listen_addresses": "127.0.0.1", "port": str(c.port),  # type: ignore[attr-defined]
                "unix_socket_directories": str(c.sockets), "fsync": "off"}  # type: ignore[attr-defined]
        args += ["-o", " ".join(f"-c {k}={v}" for k, v in opts.items()), "start"]
    else:
        args += ["-m", "fast", "stop"]
    done = c._run(*args)  # type: ignore[attr-defined]  # noqa: SLF001
    assert done.returncode == 0, done.stderr


WATCHER = "rotation-runbook (test: holds the cutover on a row lock)"  # not a session of the app's roles


def as_admin(admin_dsn: str, dsn: str) -> str:
    """The app's database, reached as the cluster's superuser (not one of the app's roles)."""
    return make_conninfo(admin_dsn, dbname=conninfo_to_dict(dsn)["dbname"])


def blocked_on_a_lock(admin_dsn: str) -> bool:
    """A session of the run (not this test's) waits on a lock in the app's database."""
    with psycopg.connect(admin_dsn, application_name=WATCHER) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock' AND application_name LIKE 'rotation-runbook%%' "
                           "AND application_name <> %s", (WATCHER,)).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("moment", ["as the cutover begins", "mid-cutover"])
def test_a_database_restart_at_the_cutover_ends_in_a_safe_state_and_the_next_step_finishes(
        own_cluster: object, tmp_path: Path, moment: str) -> None:
    """The cluster is stopped (pg_ctl -m fast) while the run is held at the cutover step, or while the cutover is in
    the middle of its work (its UPDATE of the staged job waits on a row this test holds), and started again once the
    run says it waits for it."""
    with live_crm(own_cluster.dsn, tmp_path, ROWS) as crm:  # type: ignore[attr-defined]
        crm.config = probe_config(tmp_path / "rotation.toml", crm.app)
        run = hold_before(crm, CUTOVER, tmp_path)
        if moment == "mid-cutover":
            admin = as_admin(own_cluster.dsn, crm.dsn)  # type: ignore[attr-defined]
            holder = psycopg.connect(admin, application_name=WATCHER)
            holder.execute("SELECT 1 FROM rotation_runbook.staged_job FOR UPDATE")
            run.release()
            deadline = time.monotonic() + 120
            while not blocked_on_a_lock(admin):
                assert run.proc.poll() is None, run.output()[-3000:]
                assert time.monotonic() < deadline, "the cutover never reached the locked row"
                time.sleep(0.1)
            pg_ctl(own_cluster, "stop")  # the cutover's statement is cut off in the middle of the step
            holder.close()
        else:
            pg_ctl(own_cluster, "stop")  # every session of the run is cut; the cutover finds no database
            run.release()
        deadline = time.monotonic() + 120
        while "the database does not answer" not in run.output():
            assert run.proc.poll() is None, run.output()[-3000:]
            assert time.monotonic() < deadline, run.output()[-3000:]
            time.sleep(0.2)
        pg_ctl(own_cluster, "start")  # back within the minute the run waits for it
        output = run.wait()
        line = last_line(output)
        assert run.proc.returncode != 0 and "Traceback" not in output[-2000:]
        assert line.startswith("SAFE (a) nothing moved: "), output[-3000:]
        assert plaintexts(crm.dsn, crm.key_in_env()) == crm.before and crm.key_in_env() == crm.old_key
        assert app_healthy(crm)
        assert_env_opens_values(crm)
        [folder] = crm.folders()
        failed = [s for s in folder.steps() if s.status == "failed"]
        assert [s.step for s in failed] == [CUTOVER], failed
        assert any(word in str(failed[0].error) for word in ("OperationalError", "AdminShutdown", "terminating",
                                                             "does not answer"))
        assert settled(folder)["safe state"] == "nothing moved" and closing_line(folder) == line

        assert_finished_and_nothing_stranded(crm, run_next(crm, line))


# --- a symlinked .env, more open than 0600 ---------------------------------------------------------------------------
def test_a_symlinked_env_is_rotated_through_its_target_and_stays_a_link(crm: LiveCrm, tmp_path: Path) -> None:
    managed = tmp_path / "config-management"
    managed.mkdir()
    target = managed / "crm.env"
    crm.env_file.rename(target)
    crm.env_file.symlink_to(target)
    target.chmod(0o644)
    done = crm.rotate()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert crm.env_file.is_symlink() and crm.env_file.resolve() == target.resolve()
    new_key = crm.assert_rotated()  # read through the link: the target holds the new key
    assert envfile.get_secret(target, ENV_NAME) == new_key  # the link's target itself holds the new key
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert "had mode 0o644" in done.stdout + done.stderr  # the operator is told
    [folder] = crm.folders()
    [update] = [e["value"] for e in folder.entries() if e["type"] == "evidence" and e["name"] == ".env updated"]
    assert isinstance(update, dict)
    assert update["symlink kept"] is True and update["file written"] == str(target.resolve())
    assert (update["mode found"], update["mode set"]) == ("0o644", "0o600")
    [proof] = [e["value"] for e in folder.entries() if e["type"] == "evidence" and e["name"] == "key loaded by the app"]
    assert isinstance(proof, dict) and proof["matches the value under the key"]  # the app reads the new key
    assert last_line(done.stdout).startswith("DONE: rotation ")


# --- bad input: a clear message and a FAILED run folder, never an INTERNALERROR -------------------------------------
def test_a_env_that_is_not_utf8_is_refused_clearly_with_a_failed_run_folder(crm: LiveCrm) -> None:
    data = crm.env_file.read_bytes() + b"CRM_DISPLAY_NAME=Caf\xe9 Lumi\xe8re\n"
    crm.env_file.write_bytes(data)
    done = crm.rotate()
    output = done.stdout + done.stderr
    assert done.returncode not in (0, 3) and "INTERNALERROR" not in output and "Traceback" not in output, output
    assert crm.env_file.read_bytes() == data and app_healthy(crm)
    assert plaintexts(crm.dsn, crm.old_key) == crm.before
    [folder] = crm.folders()
    assert verify_folder(folder.path).passed and folder.scenario()["status"] == "failed"
    failed = [s for s in folder.steps() if s.status == "failed"]
    assert len(failed) == 1 and "is not UTF-8 (a byte that is not UTF-8 at line" in str(failed[0].error)
    line = last_line(done.stdout)
    assert line.startswith("SAFE (nothing changed): ") and settled(folder)["safe state"] == "nothing changed", line


def test_a_reports_folder_that_cannot_be_written_is_refused_before_anything(crm: LiveCrm) -> None:
    crm.reports.write_text("a file where the reports folder should be\n")
    env_before = crm.env_file.read_bytes()
    done = crm.rotate()
    output = done.stdout + done.stderr
    assert done.returncode == 4 and "INTERNALERROR" not in output and "Traceback" not in output, output
    assert "refused before anything ran (nothing was changed): reports folder: " in output  # the preflight's
    assert crm.env_file.read_bytes() == env_before and app_healthy(crm)
    assert state.load(crm.env_file, "db_encryption_key") is None


# --- kill -9 of the tool: the next run sees the app an earlier run stopped ------------------------------------------
def test_a_tool_killed_after_stopping_the_app_is_taken_up_by_the_next_run_which_says_who_stopped_it(
        crm: LiveCrm) -> None:
    killed = crm.rotate(kill_after="the application services are stopped")
    assert killed.returncode == -signal.SIGKILL
    stopped = app_control.stopped_by(crm.env_file)
    assert stopped is not None and not app_healthy(crm)
    assert crm.key_in_env() == crm.old_key and plaintexts(crm.dsn, crm.old_key) == crm.before

    crm.extra = ("--take-over-lock",)  # the killed run left its lock record (rotation.core.lock)
    again = crm.rotate()
    assert_finished_and_nothing_stranded(crm, again)
    resumed = [e["value"] for e in crm.folders()[-1].entries()
               if e["type"] == "evidence" and e["name"] == "resuming a rotation in progress"]
    assert any(f"stopped by run {stopped.run}" in str(v.get("app", "")) for v in resumed if isinstance(v, dict))


def test_an_app_left_stopped_by_a_dead_run_is_started_by_the_next_run_saying_so(crm: LiveCrm) -> None:
    """Before: a rerun after such a crash waited a minute for the app and failed with `HTTP None`."""
    assert crm.rotate().returncode == 0
    app_control.stop_app(crm.app, crm.env_file, run_id="dead-run", credential="db_encryption_key",
                         operator="test-operator")  # as a run killed with SIGKILL right after the stop leaves it
    assert not app_healthy(crm)
    again = crm.rotate()  # the rotation is finished and not due: the run checks it again
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert "the app was stopped by run dead-run" in again.stdout and app_healthy(crm)
    assert app_control.stopped_by(crm.env_file) is None
    started = [e["value"] for e in crm.folders()[-1].entries()
               if e["type"] == "evidence" and e["name"] == "application started: an earlier run had stopped it"]
    assert len(started) == 1 and "run dead-run" in str(started[0])


# --- SIGINT mid-write (stop-the-world): the pages in flight commit, then (b) ------------------------------------------
def test_sigint_mid_reencryption_stops_after_the_pages_in_flight_and_leaves_data_moved_for_resume(
        pg: StagingServer, tmp_path: Path) -> None:
    rows = 2000
    with live_crm(pg.admin_dsn, tmp_path, rows) as crm:
        crm.config = probe_config(tmp_path / "rotation.toml", crm.app)
        crm.extra = ("--stop-the-world",)
        proc = crm.popen()
        deadline = time.monotonic() + 240
        while not 0 < progress(crm.dsn) < rows:
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "the re-encryption never started"
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=300)[0]
        line = last_line(output)
        assert proc.returncode != 0 and line.startswith("SAFE (b) data moved: "), output[-3000:]

        new_key = crm.key_in_env()
        under_new, under_old = plaintexts(crm.dsn, new_key), plaintexts(crm.dsn, crm.old_key)
        for after, new_row, old_row in zip(crm.before, under_new, under_old, strict=True):
            for column, value in enumerate(after[1:], start=1):  # each value opens with one of the keys, to itself
                assert value in (new_row[column], old_row[column]), f"row {after[0]} column {column} is stranded"
        assert opened(crm, new_key) > 0 and not app_healthy(crm)
        [folder] = crm.folders()
        assert settled(folder)["safe state"] == "data moved"

        assert_finished_and_nothing_stranded(crm, run_next(crm, line))
