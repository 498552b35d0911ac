"""Steps of the runbook's "Troubleshooting". Diagnoses and repairs live in rotation.troubleshoot (and the operator's
`rotation db-key resume`); staging creates each trouble for real (a broken .env, a killed re-encryption)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from pytest_bdd import given, then, when

from rotation.cli import main as rotation_cli
from rotation.core import app_control, envfile
from rotation.core.keys import generate_key
from rotation.core.secret import fingerprint
from rotation.db_key import procedure as db_key
from rotation.troubleshooting import diagnose as troubleshoot
from staging.world import World

PROJECT = Path(__file__).resolve().parents[1]


@dataclass
class Trouble:
    """What the scenario broke and what the diagnosis and repair found."""

    victim: str | None = None              # client_id the killed rotation had not reached
    census: troubleshoot.KeyCensus | None = None
    repair_exit: int | None = None
    repair_output: str = ""
    restored_from: Path | None = None


@pytest.fixture
def trouble() -> Trouble:
    return Trouble()


# --- shared ------------------------------------------------------------------------------------------------------

@when("the application services are restarted")
def app_restarted(world: World, evidence) -> None:
    app_control.run(world.app.restart)
    evidence.record("app restarted", {"command": world.app.restart}, source=world.app.restart)


@then("the application is not healthy")
def app_unhealthy(world: World, evidence) -> None:
    result = app_control.wait_for_health(world.app.health_url, healthy=False, timeout_s=world.app.health_timeout_s)
    evidence.record("health", {"status": result.status_code, "body": result.body}, source=f"GET {world.app.health_url}")
    assert not result.healthy, "the app is healthy: the trouble this scenario repairs did not happen"


# --- the app won't start ---------------------------------------------------------------------------------------------

@given("a rotation left a DB_ENCRYPTION_KEY line in .env that python-dotenv cannot parse")
def broken_env(world: World, evidence) -> None:
    if world.target != "staging":
        pytest.skip("breaks .env on purpose: staging only")
    new_key = generate_key()
    evidence.register_secret(new_key)
    text = world.env_file.read_text()
    # an unterminated quote, as a hand edit (or `sed` with a quoting slip) leaves it
    lines = [f'DB_ENCRYPTION_KEY="{new_key}' if line.startswith("DB_ENCRYPTION_KEY=") else line
             for line in text.splitlines()]
    fd = os.open(world.env_file, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")


@then("the .env syntax check names the line python-dotenv cannot parse")
def syntax_named(world: World, evidence) -> None:
    bad = troubleshoot.env_syntax_errors(world.env_file)
    expected = [n for n, line in enumerate(world.env_file.read_text().splitlines(), 1)
                if line.startswith("DB_ENCRYPTION_KEY=")]
    evidence.record(".env syntax check", {"unparsable lines": bad},
                    source=f"python-dotenv parse_stream over {world.env_file.name}")
    assert bad == expected, f"syntax check reported lines {bad}, expected {expected}"


@when(".env is restored from the newest backup")
def restored(world: World, trouble: Trouble, evidence) -> None:
    trouble.restored_from = troubleshoot.restore_newest_backup(world.env_file)
    evidence.record(".env restored", {"from": trouble.restored_from.name,
                                      "DB_ENCRYPTION_KEY": fingerprint(envfile.get_value(world.env_file,
                                                                                           db_key.ENV_NAME))},
                    source=f"cp {trouble.restored_from.name} {world.env_file.name} (atomic, mode 0600)")


@then("the .env syntax check passes")
def syntax_ok(world: World) -> None:
    bad = troubleshoot.env_syntax_errors(world.env_file)
    assert not bad, f"{world.env_file.name} still has unparsable lines {bad}"


@then(".env has mode 0600 after the restore")
def restored_mode(world: World) -> None:
    mode = envfile.file_mode(world.env_file)
    assert mode == 0o600, f"{world.env_file.name} has mode {mode:04o} after the restore"


# --- decryption fails after a key rotation -------------------------------------------------------------------------

@given("a database key rotation died part-way through re-encrypting the client data")
def rotation_died(world: World, trouble: Trouble, evidence) -> None:
    if world.target != "staging":
        pytest.skip("kills a re-encryption on purpose: staging only (live: run `rotation db-key resume`)")
    trouble.victim = _kill_rotation_midway(world)
    with psycopg.connect(world.dsn) as conn:
        ranges = conn.execute("SELECT count(*) FILTER (WHERE done), count(*), sum(rows_done) "
                              "FROM rotation_runbook.reencrypt_range r JOIN rotation_runbook.reencrypt_job j "
                              "USING (job_id) WHERE j.status = 'running'").fetchone()
    evidence.record("interrupted re-encryption", {"ranges done": ranges[0], "ranges": ranges[1],
                                                  "rows re-encrypted": ranges[2]},
                    source="`rotation db-key rotate` killed with SIGKILL while blocked on a row lock")
    assert 0 < ranges[0] < ranges[1], f"the rotation was not interrupted part-way: {ranges}"


def _kill_rotation_midway(world: World, timeout_s: float = 60) -> str:
    """Run the operator's `rotation db-key rotate`, hold one row (the last client) locked so the worker on its range
    blocks, SIGKILL the process once every other range is done, and end its server sessions. Returns that client."""
    with psycopg.connect(world.dsn) as lock:
        victim = lock.execute("SELECT max(client_id) FROM crm_client_preferences WHERE email_encrypted IS NOT NULL"
                              ).fetchone()[0]
        lock.execute("SELECT 1 FROM crm_client_preferences WHERE client_id = %s FOR UPDATE", (victim,))
        proc = subprocess.Popen([sys.executable, "-m", "rotation", "db-key", "rotate", "--env-file",
                                 str(world.env_file), "--workers", "2", "--operator", "staging-killed-run"],
                                cwd=PROJECT, env={**os.environ, "ROTATION_DSN": world.dsn},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_until_blocked(world.dsn, proc, timeout_s)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        with psycopg.connect(world.dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND application_name = 'rotation-runbook' AND pid <> pg_backend_pid()")
        lock.rollback()
    return victim


def _wait_until_blocked(dsn: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """Until the only unfinished range is the one waiting on our lock."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"`rotation db-key rotate` ended (exit {proc.returncode}) before it could be "
                                     f"interrupted: {proc.stderr.read().decode(errors='replace')[-500:]}")
            waiting = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                                   "application_name = 'rotation-runbook' AND wait_event_type = 'Lock'").fetchone()[0]
            left = conn.execute("SELECT count(*) FILTER (WHERE NOT done) FROM rotation_runbook.reencrypt_range r "
                                "JOIN rotation_runbook.reencrypt_job j USING (job_id) WHERE j.status = 'running'"
                                ).fetchone()[0] if _has_jobs(conn) else None
            if waiting and left == 1:
                return
            time.sleep(0.05)
    raise AssertionError("the rotation never blocked on the locked row")


def _has_jobs(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('rotation_runbook.reencrypt_range') IS NOT NULL").fetchone()[0]


@given("one value the rotation has not reached yet is under neither key")
def value_under_neither(world: World, trouble: Trouble) -> None:
    with psycopg.connect(world.dsn) as conn:
        conn.execute("UPDATE crm_client_preferences SET email_encrypted = pgp_sym_encrypt(%s, %s) "
                     "WHERE client_id = %s", ("unrecoverable@example.com", generate_key(), trouble.victim))


@when("the encrypted values are counted per key")
def census(world: World, trouble: Trouble, evidence) -> None:
    keys = troubleshoot.keys_for_repair(world.env_file)
    with psycopg.connect(world.dsn) as conn:
        trouble.census = troubleshoot.key_census(conn, keys.new, keys.old)
    evidence.record("values per key", {"summary": trouble.census.summary(), "per column": trouble.census.counts,
                                       "under neither key": trouble.census.neither_lines()},
                    source="every value of crm_client_preferences tried with rotation_runbook.try_decrypt($new), "
                           "then ($old)")


@then("some values are under the new key, the others under the old key, and none under neither")
def census_partial(trouble: Trouble) -> None:
    c = trouble.census
    assert c.total("new") > 0 and c.total("old") > 0 and c.total("neither") == 0, c.summary()


@when("the interrupted re-encryption is finished with the old key from the newest backup")
def repair(world: World, trouble: Trouble, operator: str, evidence) -> None:
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        trouble.repair_exit = rotation_cli(["db-key", "resume", "--dsn", world.dsn, "--env-file", str(world.env_file),
                                            "--workers", "2", "--operator", operator])
    trouble.repair_output = out.getvalue().replace("\r", "\n")
    evidence.record("repair", {"exit": trouble.repair_exit, "output": trouble.repair_output[-3000:]},
                    source="rotation db-key resume --env-file .env (old key from the newest matching backup)")


@then("the repair reports every value verified under the new key")
def repair_ok(trouble: Trouble) -> None:
    assert trouble.repair_exit == 0, trouble.repair_output[-2000:]


@then("every value is under the new key and none under the old key or neither")
def census_complete(trouble: Trouble) -> None:
    c = trouble.census
    assert c.complete and c.total("old") == 0 and c.total("neither") == 0, c.summary()


@then("the count names that value by client_id and column as under neither key")
@then("the count still names that value by client_id and column as under neither key")
def census_names_victim(trouble: Trouble) -> None:
    c = trouble.census
    assert c.neither == ((trouble.victim, "email_encrypted"),), (
        f"expected exactly client_id={trouble.victim} email_encrypted under neither key; "
        f"{c.summary()}; {c.neither_lines()}")


@then("the repair stops and names that value by client_id and column")
def repair_names_victim(trouble: Trouble) -> None:
    assert trouble.repair_exit not in (None, 0), "the repair reported success over a value no key opens"
    assert f"client_id={trouble.victim} email_encrypted (under neither key)" in trouble.repair_output, (
        trouble.repair_output[-2000:])


@then("the re-encryption stays unfinished")
def still_running(world: World) -> None:
    with psycopg.connect(world.dsn) as conn:
        running = conn.execute("SELECT count(*) FROM rotation_runbook.reencrypt_job WHERE status = 'running'"
                               ).fetchone()[0]
    assert running == 1, "the re-encryption was marked finished although a value was not re-encrypted"
