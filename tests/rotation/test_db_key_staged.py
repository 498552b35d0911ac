"""The staged DB key rotation (rotation.db_key.staged): staging while the app runs, the cutover while it is stopped.

- A writer updates and inserts rows while (and after) the values are staged: the cutover re-encrypts exactly the rows
  whose ciphertext changed or that are new, and the digests it writes are those of the writer's plaintexts.
- The cutover's proof fails, naming the rows, when its straggler pass skips the changed rows.
- The operator's command killed with SIGKILL during staging, during the cutover's straggler pass, during the swap,
  before the post-start sweep and during it: the same command again finishes, every value under the new key, none
  under the old.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rotation.core import prerequisites
from rotation.core.config import default_config
from rotation.core.database import APPLICATION_NAME, connect, key_ref
from rotation.core.deployment import Deployment
from rotation.core.proof import NoEvidence
from rotation.core.secret import Secret
from rotation.db_key import staged
from rotation.db_key.procedure import DbKeyRotation
from rotation.db_key.reencrypt import pgcrypto_specs
from staging.postgres import StagingServer
from staging.world import staging_world
from tests.rotation.live_crm import LiveCrm, live_crm, plaintexts

EVIDENCE = NoEvidence()
CONFIG = default_config()
PII = pgcrypto_specs(CONFIG)[0]
ROWS = 30
STAGING_STEP = "all sensitive data is prepared under the new key while the application still runs"
SWEEP_STEP = "no encrypted value decrypts with the old key"
WATCHER = "rotation-runbook (test: holds a lock the rotation will wait on)"  # not a session of the app's role


@pytest.fixture
def world(pg: StagingServer, tmp_path: Path) -> Iterator[Deployment]:
    with staging_world(pg.admin_dsn, tmp_path / "app", CONFIG, rows=ROWS, operator="test") as deployment:
        prerequisites.back_up(deployment, EVIDENCE)
        yield deployment


def write_as_the_app(dsn: str, key: Secret, *, updates: list[str], inserts: list[str]) -> None:
    """What the app does: new e-mail addresses for some clients, new clients, encrypted under the key it runs on."""
    with connect(dsn, keys={"app": key}) as conn:
        for pk in updates:
            conn.execute(f"UPDATE crm_client_preferences SET email_encrypted = encrypt_sensitive_data("
                         f"%s, {key_ref('app')}) WHERE client_id = %s", (f"changed-{pk}@example.com", pk))
        for pk in inserts:
            conn.execute(f"INSERT INTO crm_client_preferences (client_id, email_encrypted, full_name_encrypted) "
                         f"VALUES (%s, encrypt_sensitive_data(%s, {key_ref('app')}), "
                         f"encrypt_sensitive_data('New Client', {key_ref('app')}))", (pk, f"{pk}@example.com"))
        conn.commit()


def test_a_writer_during_staging_is_caught_by_the_cutover_and_proven_by_digest(world: Deployment) -> None:
    r = DbKeyRotation(world, reason="test", workers=2, staged=True)
    r.check_current_key(EVIDENCE)
    r.generate_key(EVIDENCE)
    r.stage(EVIDENCE)
    updates, inserts = ["client-00000003", "client-00000017"], ["client-90000001", "client-90000002"]
    write_as_the_app(world.dsn, r.old_key, updates=updates, inserts=inserts)
    before = plaintexts(world.dsn, r.old_key)
    prerequisites.stop_app(world, EVIDENCE)
    r.write_env(EVIDENCE)
    with connect(world.dsn) as conn:
        job = staged.find_staged(conn, PII, r.old_key, r.new_key)
    assert job is not None
    result = staged.cutover(world.dsn, PII, r.old_key, r.new_key)
    assert result.stragglers_changed == tuple(updates) and result.stragglers_inserted == tuple(inserts)
    assert result.proven and result.at_cutover == len(updates) + len(inserts) and result.rows == ROWS + 2
    r.reencrypt(EVIDENCE)  # the procedure's own cutover finds everything done, and the Fernet values follow
    r.verify_new_key(EVIDENCE)
    with connect(world.dsn) as conn:
        check = staged.verify_staged(conn, PII, result.job, result.job_id, r.old_key, r.new_key)
    assert check.ok and check.values_verified == check.values_total > ROWS
    with connect(world.dsn) as conn:  # finished: the next rotation of the table may start
        status = conn.execute("SELECT status FROM rotation_runbook.reencrypt_job WHERE job_id = %s",
                              (result.job_id,)).fetchone()
    assert status == ("done",)
    assert plaintexts(world.dsn, r.new_key) == before
    with connect(world.dsn, keys={"new": r.new_key}) as conn:  # the digest proven is of what the writer wrote
        rows = conn.execute(f"SELECT s.pk, s.d0 = hmac(%s::text, {key_ref('new')}, 'sha256'), s.at_cutover FROM "
                            f"{job.side_name} s WHERE s.pk = %s",
                            ("changed-client-00000003@example.com", updates[0])).fetchall()
    assert rows == [("client-00000003", True, True)]


def test_the_cutover_proof_names_the_rows_a_broken_straggler_pass_skipped(world: Deployment) -> None:
    r = DbKeyRotation(world, reason="test", workers=2, staged=True)
    r.check_current_key(EVIDENCE)
    r.generate_key(EVIDENCE)
    r.stage(EVIDENCE)
    write_as_the_app(world.dsn, r.old_key, updates=["client-00000005"], inserts=[])
    prerequisites.stop_app(world, EVIDENCE)
    r.write_env(EVIDENCE)
    broken = staged.cutover(world.dsn, PII, r.old_key, r.new_key, skip_changed=True)
    assert not broken.proven and broken.not_equal == ("client-00000005",) and broken.equal == ROWS - 1
    assert broken.job.phase == "cutover"  # not swapped: the next run takes it up
    fixed = staged.cutover(world.dsn, PII, r.old_key, r.new_key)
    assert fixed.proven and fixed.stragglers_changed == ("client-00000005",)


# --- kill -9 of the operator's command ------------------------------------------------------------------------------

@pytest.fixture
def crm(pg: StagingServer, tmp_path: Path) -> Iterator[LiveCrm]:
    with live_crm(pg.admin_dsn, tmp_path, ROWS) as world:
        world.extra = ("--take-over-lock",)  # a killed run leaves its lock record: the operator takes it over
        yield world


def admin_dsn(pg: StagingServer, dsn: str) -> str:
    return make_conninfo(pg.admin_dsn, dbname=conninfo_to_dict(dsn)["dbname"], application_name=WATCHER)


def popen(crm: LiveCrm, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_TEST_", "PYTEST_ADDOPTS"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.Popen([*crm.command(), *extra], cwd=env["PYTHONPATH"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def kill_when(proc: subprocess.Popen[str], dsn: str, query: str, timeout_s: float = 90) -> None:
    """SIGKILL the command as soon as `query` (read-only, as a superuser session) answers true."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            try:
                row = conn.execute(query).fetchone()
            except psycopg.errors.UndefinedTable:  # the run has not created its bookkeeping yet
                row = None
            if row and row[0]:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                # its sessions die with it, but only once they next talk to it: end them now, as a crash would
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                             "current_database() AND application_name = %s", (APPLICATION_NAME,))
                return
            assert proc.poll() is None, f"the rotation ended before the moment to kill it:\n{proc.communicate()[0]}"
            time.sleep(0.01)
    proc.kill()
    raise AssertionError("the moment to kill never came")


STAGED_SOME = ("SELECT EXISTS (SELECT 1 FROM rotation_runbook.staged_job WHERE phase = 'staging' AND rows_staged > 0 "
               "AND rows_staged < rows_total)")
BLOCKED = ("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = "
           "'Lock' AND application_name <> %s)")


def blocked_query() -> str:
    return BLOCKED.replace("%s", "'" + WATCHER + "'")


def finish_and_check(crm: LiveCrm, before: list[tuple[object, ...]]) -> None:
    again = crm.rotate()
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    crm.before = before
    crm.assert_rotated()
    with psycopg.connect(crm.dsn) as conn:
        left = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'rotation_runbook' "
                            "AND table_name ~ '^staged_[0-9]+$'").fetchone()
    assert left == (0,), "a side table outlived the finished rotation"


def test_killed_during_staging(pg: StagingServer, crm: LiveCrm) -> None:
    proc = popen(crm, "--max-rate=40")  # pages of 10 rows, a quarter second each: the kill lands between two
    kill_when(proc, admin_dsn(pg, crm.dsn), STAGED_SOME)
    finish_and_check(crm, crm.before)


def test_killed_during_the_cutovers_straggler_pass(pg: StagingServer, crm: LiveCrm) -> None:
    killed = crm.rotate(kill_after=STAGING_STEP)
    assert killed.returncode == -9, killed.stdout[-2000:]
    write_as_the_app(crm.dsn, crm.old_key, updates=["client-00000002", "client-00000009"], inserts=["client-90000001"])
    before = plaintexts(crm.dsn, crm.old_key)
    with psycopg.connect(admin_dsn(pg, crm.dsn)) as lock:  # the straggler pass will wait on this staged row
        stage_id = lock.execute("SELECT max(stage_id) FROM rotation_runbook.staged_job").fetchone()
        assert stage_id and stage_id[0]
        lock.execute(f"SELECT 1 FROM rotation_runbook.staged_{int(stage_id[0])} WHERE pk = 'client-00000009' "
                     "FOR UPDATE")
        kill_when(popen(crm), admin_dsn(pg, crm.dsn), blocked_query())
        lock.rollback()
    with psycopg.connect(crm.dsn) as conn:
        phase = conn.execute("SELECT phase FROM rotation_runbook.staged_job").fetchone()
    assert phase == ("staged",), phase  # killed before anything was swapped
    finish_and_check(crm, before)


def test_killed_during_the_swap(pg: StagingServer, crm: LiveCrm) -> None:
    killed = crm.rotate(kill_after=STAGING_STEP)
    assert killed.returncode == -9, killed.stdout[-2000:]
    with psycopg.connect(admin_dsn(pg, crm.dsn)) as lock:  # the swap will wait on this client's row
        lock.execute("SELECT 1 FROM crm_client_preferences WHERE client_id = 'client-00000004' FOR UPDATE")
        kill_when(popen(crm), admin_dsn(pg, crm.dsn), blocked_query())
        lock.rollback()
    with psycopg.connect(crm.dsn) as conn:
        phase = conn.execute("SELECT phase FROM rotation_runbook.staged_job").fetchone()
    assert phase == ("cutover",), phase
    finish_and_check(crm, crm.before)


def test_killed_before_the_post_start_sweep(crm: LiveCrm) -> None:
    killed = crm.rotate(kill_after="the encryption key loaded by the application is the new key")
    assert killed.returncode == -9, killed.stdout[-2000:]
    finish_and_check(crm, crm.before)


SWEEPING = ("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = "
            "'Lock' AND query LIKE '%try_decrypt_bytea%' AND application_name <> '" + WATCHER + "')")


def test_killed_during_the_post_start_sweep(pg: StagingServer, crm: LiveCrm) -> None:
    with psycopg.connect(crm.dsn) as app:  # a table of the app's own that only the sweep reads (it reads them all)
        app.execute("CREATE TABLE client_archive (archive_id int PRIMARY KEY, note text)")
        app.commit()
    with psycopg.connect(admin_dsn(pg, crm.dsn)) as lock:  # the sweep will wait on this lock
        lock.execute("LOCK TABLE client_archive IN ACCESS EXCLUSIVE MODE")
        kill_when(popen(crm), admin_dsn(pg, crm.dsn), SWEEPING)
        lock.rollback()
    finish_and_check(crm, crm.before)
