"""Day one: the operator's `rotation db-key rotate ... --confirm-live` against a database the suite never touched.

The database holds only the CRM's migrations, applied by the app's own non-superuser owner role; there is no
`rotation_runbook` schema. The server logs every statement (`log_statement=all`). The app stand-in is a real process
started and stopped by its commands (pidfile), proven on the new key by its probe. In both modes (staged, the default,
and --stop-the-world) the run passes; its first step records that it created the suite's schema under the app's role;
the server log it produced holds no ERROR line (the tool learns privileges from the catalog instead of trying a SET)
and no key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rotation.evidence.verify import verify_folder
from staging.postgres import StagingServer, reconfigure, staging_server
from staging.world import probe_config
from tests.leakcheck import assert_no_fragment
from tests.rotation.live_crm import LiveCrm, live_crm, scheduled_steps

ROWS = 30
# Each line names the database and the application, so that what the tool logged is told from the rest.
LOGGING = {"log_statement": "all", "log_line_prefix": "%m [%p] db=%d app=%a: "}
FIRST_STEP = "Given no other rotation of this database is running and nothing the rotation needs is missing"


@pytest.fixture(scope="module")
def logging_server() -> Iterator[StagingServer]:
    """A private cluster of our own whose log file we read, logging every statement."""
    with staging_server(None) as server:
        if server.server_log is None:
            pytest.skip("needs a private cluster (PostgreSQL binaries) to read the server's log file")
        reconfigure(server.admin_dsn, LOGGING)
        yield server


def server_log_since(server: StagingServer, offset: int) -> bytes:
    assert server.server_log is not None
    with server.server_log.open("rb") as f:
        f.seek(offset)
        return f.read()


def suite_schema_exists(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT to_regnamespace('rotation_runbook') IS NOT NULL").fetchone()
    return bool(row and row[0])


@pytest.fixture
def day_one(logging_server: StagingServer, tmp_path: Path) -> Iterator[LiveCrm]:
    with live_crm(logging_server.admin_dsn, tmp_path, ROWS, runbook_schema=False) as crm:
        crm.config = probe_config(tmp_path / "rotation.toml", crm.app)
        yield crm


@pytest.mark.parametrize("mode", ["staged", "stop-the-world"])
def test_the_first_live_run_on_a_database_holding_only_the_apps_migrations(
        logging_server: StagingServer, day_one: LiveCrm, mode: str) -> None:
    crm = day_one
    with psycopg.connect(crm.dsn) as conn:
        role = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    assert role is not None and role[1] is False, "the run must be made as the app's non-superuser role"
    assert not suite_schema_exists(crm.dsn), "a day-one database has no rotation_runbook schema"
    assert logging_server.server_log is not None
    offset = logging_server.server_log.stat().st_size
    crm.extra = ("--stop-the-world",) if mode == "stop-the-world" else ()

    done = crm.rotate()

    log = server_log_since(logging_server, offset)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    new_key = crm.assert_rotated()
    [run] = crm.folders()
    assert verify_folder(run.path).passed
    assert [s.step for s in run.steps()] == scheduled_steps() and scheduled_steps()[0] == FIRST_STEP
    entries = {e["name"]: e["value"] for e in run.entries() if e["type"] == "evidence"}
    assert entries["the suite's schema rotation_runbook"] == {"found": "absent", "done": "created",
                                                              "role": role[0], "database": crm.dsn.split(
                                                                  "dbname=")[1].split()[0]}
    checked = entries["checked before any change"]
    assert isinstance(checked, dict) and checked["refused"] == 0 and checked["checked"] >= 10, checked
    lock = entries["run lock"]
    assert isinstance(lock, dict) and lock["taken"] is True and lock["taken over from a stale lock"] is None

    ours = f"db={crm.dsn.split('dbname=')[1].split()[0]} ".encode()
    lines = [line for line in log.splitlines() if ours in line]
    assert sum(b"app=rotation-runbook" in line and b"statement: " in line for line in lines) > 50, \
        "the server did not log the tool's statements: the search below would prove nothing"
    assert not errors_in(lines), "the run left ERROR lines in the server log:\n" + "\n".join(errors_in(lines)[:20])
    assert_no_fragment({"server log": log}, [crm.old_key.reveal(), new_key.reveal()])
    assert_the_search_finds_a_refused_set(logging_server, crm.dsn, ours)
    with psycopg.connect(crm.dsn) as conn:
        owner = conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'rotation_runbook'"
                             ).fetchone()
        locks = conn.execute("SELECT count(*) FROM rotation_runbook.run_lock").fetchone()
    assert owner == (role[0],), "the suite's schema must be created under the app's own role"
    assert locks == (0,), "the run lock's record is removed when the run ends"


def errors_in(lines: list[bytes]) -> list[str]:
    return [line.decode(errors="replace") for line in lines if b"ERROR:" in line]


def assert_the_search_finds_a_refused_set(server: StagingServer, dsn: str, ours: bytes) -> None:
    """Control: what the tool did before (try the SET as the app's role) is found by the same search."""
    assert server.server_log is not None
    offset = server.server_log.stat().st_size
    with psycopg.connect(dsn, application_name="rotation-runbook", autocommit=True) as conn, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SET log_parameter_max_length = 0")
    lines = [line for line in server_log_since(server, offset).splitlines() if ours in line]
    assert len(errors_in(lines)) == 1, lines


def test_the_schema_step_is_idempotent_and_says_so(logging_server: StagingServer, day_one: LiveCrm) -> None:
    """A second run (the key is not due: it re-checks the finished rotation) finds the schema current, executes
    nothing, and writes no ERROR line either."""
    assert day_one.rotate().returncode == 0
    assert logging_server.server_log is not None
    offset = logging_server.server_log.stat().st_size
    again = day_one.rotate()
    assert again.returncode == 0, again.stdout[-3000:]
    ours = f"db={day_one.dsn.split('dbname=')[1].split()[0]} ".encode()
    lines = [line for line in server_log_since(logging_server, offset).splitlines() if ours in line]
    assert lines and not errors_in(lines), errors_in(lines)[:20]
    second = day_one.folders()[-1]
    [schema] = [e["value"] for e in second.entries()
                if e["type"] == "evidence" and e["name"] == "the suite's schema rotation_runbook"]
    assert isinstance(schema, dict) and schema["found"] == "current" and schema["done"].startswith("already current")
