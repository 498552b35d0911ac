"""No key in SQL text: run every credential's scheduled rotation (the scenarios tagged @scheduled) against a cluster
that logs every statement (log_statement=all), then look for the old and new credentials in the server log, pytest's
output and every file the run wrote (except .env, its backups and the pending file, which exist to hold them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotation.core.config import default_config
from staging.postgres import StagingServer, staging_server
from tests.harness import SuiteRunner
from tests.leakcheck import assert_no_secret, credentials_in, places_under


@pytest.fixture(scope="module")
def logging_pg() -> Iterator[StagingServer]:
    with staging_server(server_settings={"log_statement": "all", "log_min_error_statement": "error"}) as server:
        assert server.server_log is not None, "this test needs the private-cluster backend to read the server log"
        yield server


def test_rotations_leave_no_secret_in_server_log_output_or_files(logging_pg: StagingServer, tmp_path: Path) -> None:
    runner = SuiteRunner(admin_dsn=logging_pg.admin_dsn, workdir=tmp_path / "run")
    runner.workdir.mkdir()
    basetemp = tmp_path / "basetemp"
    run = runner.run("steps/test_rotation.py", "-m", "scheduled", "--basetemp", str(basetemp), "-s", "-v")
    credentials = len(default_config().credentials)
    assert len(run.outcomes) == credentials, f"expected one scheduled rotation per credential: {list(run.outcomes)}"
    assert all(o.status == "passed" for o in run.outcomes.values()), run.output[-3000:]

    secrets = credentials_in(basetemp)
    assert len(secrets) >= 2 * credentials, "expected an old and a new value of every credential"
    server_log = logging_pg.server_log.read_bytes()
    assert b"pgp_sym_encrypt" in server_log, "the server did not log the rotation's statements: the test proves nothing"
    assert_no_secret({"server log": server_log, "pytest output": run.output.encode()} | places_under(tmp_path), secrets)


def test_the_log_check_can_fail(logging_pg: StagingServer) -> None:
    """Without SET log_parameter_max_length = 0 this server does log bound keys: the check above is not vacuous."""
    import psycopg

    from rotation.core.database import connect

    canary, protected = "canary-" + "k" * 40, "protected-" + "p" * 40
    with psycopg.connect(logging_pg.admin_dsn) as conn:
        conn.execute("SELECT length(%s::text)", (canary,))
    with connect(logging_pg.admin_dsn) as conn:
        conn.execute("SELECT length(%s::text)", (protected,))
    log = logging_pg.server_log.read_text(errors="replace")
    assert canary in log
    assert protected not in log
