"""The run lock (rotation.core.lock), the suite's schema step (rotation.core.runbook_schema) and the privilege lookups
(rotation.core.database.may_set), in-process against a scratch database owned by an app-like role."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rotation.core import runbook_schema
from rotation.core.database import apply_runbook_schema, connect, may_set
from rotation.core.lock import LockRefused, RunLock
from staging.postgres import StagingServer, app_database


@pytest.fixture
def dsn(pg: StagingServer) -> Iterator[str]:
    with app_database(pg.admin_dsn) as app_dsn:
        yield app_dsn


def as_admin(pg: StagingServer, dsn: str) -> str:
    return make_conninfo(pg.admin_dsn, dbname=conninfo_to_dict(dsn)["dbname"])


def role_of(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["user"])


def ready(dsn: str) -> None:
    with connect(dsn) as conn:
        apply_runbook_schema(conn)
        conn.commit()


def lock(dsn: str, operator: str, *, take_over: bool = False) -> RunLock:
    return RunLock(dsn, operator=operator, change_id=f"CHG-{operator}", procedure="test rotation",
                   take_over=take_over)


def test_a_second_run_is_refused_at_once_naming_the_holder_until_the_first_releases(dsn: str) -> None:
    ready(dsn)
    first, second = lock(dsn, "alice"), lock(dsn, "bob")
    first.take()
    claimed = first.claim()
    assert claimed.taken_over is None and claimed.holder.operator == "alice"
    with pytest.raises(LockRefused, match=f"alice \\(change CHG-alice, test rotation\\) on host "
                                          f"{socket.gethostname()}, pid {os.getpid()}"):
        second.take()
    first.require_held()
    first.release()
    with pytest.raises(LockRefused, match="was lost"):
        first.require_held()
    second.take()
    assert second.claim().taken_over is None
    second.release()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM rotation_runbook.run_lock").fetchone() == (0,)


def test_a_holder_that_has_not_written_its_record_is_named_by_its_session(dsn: str) -> None:
    first, second = lock(dsn, "alice"), lock(dsn, "bob")
    first.take()  # day one: no schema yet, so no record
    with pytest.raises(LockRefused, match="rotation-runbook lock: alice CHG-alice"):
        second.take()
    first.release()


def test_a_stale_record_is_refused_and_taken_over_only_with_the_option(dsn: str) -> None:
    ready(dsn)
    dead = lock(dsn, "alice")
    dead.take()
    dead.claim()
    dead._conn.close()  # type: ignore[union-attr]  # the session ends as a kill -9 ends it: the record stays
    refused = lock(dsn, "bob")
    refused.take()
    with pytest.raises(LockRefused, match="a stale run lock: alice .* again with --take-over-lock"):
        refused.claim()
    assert not refused.held, "a refused claim lets the advisory lock go"
    taker = lock(dsn, "bob", take_over=True)
    taker.take()
    claimed = taker.claim()
    assert claimed.taken_over is not None and claimed.taken_over.operator == "alice"
    assert claimed.holder.operator == "bob"
    taker.release()


def test_the_schema_step_names_the_grant_when_the_role_may_not_create_it(pg: StagingServer, dsn: str) -> None:
    role, database = role_of(dsn), str(conninfo_to_dict(dsn)["dbname"])
    with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(sql.Identifier(database),
                                                                            sql.Identifier(role)))
    with connect(dsn) as conn:
        found = runbook_schema.check(conn)
    assert found.state == "absent" and not found.ok
    assert found.fixes == (f'GRANT CREATE ON DATABASE "{database}" TO "{role}";',)
    with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
        conn.execute(found.fixes[0])
    with connect(dsn) as conn:
        found = runbook_schema.check(conn)
        assert found.ok and runbook_schema.ensure(conn, found) == "created"
        assert runbook_schema.ensure(conn, runbook_schema.check(conn)).startswith("already current")


def test_a_schema_another_role_created_names_the_grants_to_use_it(pg: StagingServer, dsn: str) -> None:
    with psycopg.connect(as_admin(pg, dsn)) as conn:
        apply_runbook_schema(conn)  # created by the superuser, not by the app's role
    with connect(dsn) as conn:
        found = runbook_schema.check(conn)
    assert found.state == "current" and not found.ok
    assert any("USAGE and CREATE on schema rotation_runbook" in m for m in found.missing), found.missing
    assert found.fixes == (runbook_schema.grants(role_of(dsn)),)
    with psycopg.connect(as_admin(pg, dsn), autocommit=True) as conn:
        conn.execute(found.fixes[0])
    with connect(dsn) as conn:
        assert runbook_schema.check(conn).ok


def test_may_set_reads_the_privilege_from_the_catalog(pg: StagingServer, dsn: str) -> None:
    with connect(dsn) as conn:
        if conn.info.server_version < 150000:
            pytest.skip("GRANT SET ON PARAMETER needs PostgreSQL 15")
        assert may_set(conn, "log_parameter_max_length_on_error")  # context user
        assert not may_set(conn, "session_replication_role")
        assert not may_set(conn, "log_parameter_max_length")
        assert not may_set(conn, "shared_buffers")  # postmaster: nobody may SET it
    with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SET ON PARAMETER session_replication_role TO {}").format(
            sql.Identifier(role_of(dsn))))
    with connect(dsn) as conn:
        assert may_set(conn, "session_replication_role")
