"""Refused before any change, then the one next step, then the rotation completes.

Each fault is met by the operator's live command (`rotation db-key rotate ... --confirm-live`) against a scratch CRM
and the real app stand-in: a second operator while a rotation runs, a stale lock left by a killed run, an unusable
signing key (RSA, encrypted, unreadable), a reports folder that is read-only or full, and a missing privilege (the
app's role neither owns the table with triggers nor may set session_replication_role). Each test asserts the state
left (the run's first step failed and says why, `.env` byte for byte, the app running, every value still under the old
key, no rotation begun), the next step the output names, runs that step, and asserts the rotation then completes with
every value under the new key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rotation.core import app_control, state
from rotation.core.envfile import backups
from rotation.db_key.procedure import CREDENTIAL
from staging.postgres import StagingServer, free_port
from tests.harness import PROJECT
from tests.rotation.live_crm import LiveCrm, RunFolder, live_crm, plaintexts

ROWS = 30
PASSPHRASE = "a passphrase the run cannot ask for"  # noqa: S105  (a test key's, not a secret)
FIRST_STEP = "no other rotation of this database is running and nothing the rotation needs is missing"


@pytest.fixture
def crm(pg: StagingServer, tmp_path: Path) -> Iterator[LiveCrm]:
    with live_crm(pg.admin_dsn, tmp_path, ROWS) as world:
        yield world


def assert_nothing_changed(crm: LiveCrm, env_before: bytes) -> None:
    """.env byte for byte, the app running, every value under the old key, no rotation begun, no backup made."""
    assert crm.env_file.read_bytes() == env_before, ".env changed"
    assert app_control.health(crm.app.health_url).healthy, "the app is not running"
    assert plaintexts(crm.dsn, crm.old_key) == crm.before, "values are no longer all under the old key"
    assert state.load(crm.env_file, CREDENTIAL) is None, "a rotation was begun"
    assert not state.pending_path(crm.env_file, CREDENTIAL).exists(), "a pending key was written"
    assert not backups(crm.env_file), "the configuration was backed up: a step after the checks ran"


def refused_at_first_step(run: RunFolder) -> str:
    """The error of the run's one failed step, which must be the first; no later step ran."""
    steps = run.steps()
    failed = [s for s in steps if s.status == "failed"]
    assert len(failed) == 1 and failed[0].text == FIRST_STEP, [(s.text, s.status) for s in steps]
    assert all(s.status != "passed" for s in steps), "a step ran after the refusal"
    return str(failed[0].error)


def output(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


def complete(crm: LiveCrm, **kwargs: object) -> None:
    done = crm.rotate(**kwargs)  # type: ignore[arg-type]
    assert done.returncode == 0, output(done)[-4000:]
    crm.assert_rotated()


def admin_dsn(pg: StagingServer, dsn: str) -> str:
    return make_conninfo(pg.admin_dsn, dbname=conninfo_to_dict(dsn)["dbname"])


def app_role(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["user"])


# --- one rotation at a time -----------------------------------------------------------------------------------------
def wait_for_lock_record(dsn: str, proc: subprocess.Popen[str], timeout_s: float = 180) -> tuple[object, ...]:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"the first run ended early:\n{proc.communicate()[0][-3000:]}"
            exists = conn.execute("SELECT to_regclass('rotation_runbook.run_lock') IS NOT NULL").fetchone()
            row = conn.execute("SELECT operator, change_id, pid FROM rotation_runbook.run_lock").fetchone() \
                if exists and exists[0] else None
            if row:
                return tuple(row)
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the first run never recorded its lock")


def test_a_second_operator_is_refused_at_once_naming_the_holder(crm: LiveCrm) -> None:
    crm.extra = ("--max-rate=1",)  # the first run stages 30 rows at one a second: it holds the lock for a while
    first = crm.popen()
    try:
        holder = wait_for_lock_record(crm.dsn, first)
        assert holder == ("test-operator", "CHG-0009", first.pid)
        second = subprocess.run([*crm.command(), "--operator=second-operator", "--change-id=CHG-0010"], cwd=PROJECT,
                                capture_output=True, text=True, timeout=300, check=False,
                                env={**crm_env(), "PYTHONPATH": str(PROJECT)})
        assert first.poll() is None, "the second run ended after the first: it waited for the lock"
        assert second.returncode != 0, output(second)[-3000:]
        named = (f"test-operator (change CHG-0009, db_encryption_key rotation) on host {socket.gethostname()}, "
                 f"pid {first.pid}")
        assert named in output(second), output(second)[-3000:]
        assert "then run this command again" in output(second)
        out, _ = first.communicate(timeout=600)
        assert first.returncode == 0, out[-4000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            first.kill()
    crm.assert_rotated()
    [refused] = [f for f in crm.folders() if any(s.status == "failed" for s in f.steps())]
    assert named in refused_at_first_step(refused)
    assert [e for e in refused.entries() if e["type"] == "evidence" and e["name"] == "run lock"] == [], \
        "the refused run recorded a lock it never held"
    crm.extra = ()
    complete(crm)  # the next step: the same command once the first is done (it re-checks the finished rotation)


def crm_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_TEST_", "PYTEST_ADDOPTS"))}


def test_a_stale_lock_is_refused_then_taken_over_with_the_option(crm: LiveCrm) -> None:
    killed = crm.rotate(kill_after=FIRST_STEP)
    assert killed.returncode == -9, output(killed)[-3000:]
    env_before = crm.env_file.read_bytes()

    refused = crm.rotate()

    assert refused.returncode != 0
    assert_nothing_changed(crm, env_before)
    error = refused_at_first_step(crm.folders()[-1])
    assert "a stale run lock: test-operator (change CHG-0009, db_encryption_key rotation)" in error, error
    assert "run this command again with --take-over-lock" in output(refused), output(refused)[-3000:]

    crm.extra = ("--take-over-lock",)
    complete(crm)
    [lock] = [e["value"] for e in crm.folders()[-1].entries() if e["type"] == "evidence" and e["name"] == "run lock"]
    assert isinstance(lock, dict) and lock["how"].startswith("--take-over-lock")
    stale = lock["taken over from a stale lock"]
    assert isinstance(stale, dict) and stale["operator"] == "test-operator" and stale["change id"] == "CHG-0009"


# --- the signing key ------------------------------------------------------------------------------------------------
def bad_signing_key(kind: str, path: Path) -> Path:
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    elif kind == "encrypted":
        path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE.encode())))
    else:  # unreadable: a directory where the file should be (the suite runs as root here: chmod 000 would not do)
        path.mkdir()
    return path


@pytest.mark.parametrize(("kind", "why"), [("rsa", "holds a key of type RSA, not Ed25519"),
                                           ("encrypted", "is encrypted with a passphrase"),
                                           ("unreadable", "cannot be read")])
def test_an_unusable_signing_key_is_refused_before_any_change(crm: LiveCrm, tmp_path: Path, kind: str,
                                                              why: str) -> None:
    key = bad_signing_key(kind, tmp_path / "signing-key.pem")
    env_before = crm.env_file.read_bytes()

    refused = crm.rotate(environ={"ROTATION_SIGNING_KEY": str(key)})

    assert refused.returncode != 0
    assert_nothing_changed(crm, env_before)
    [run] = crm.folders()
    error = refused_at_first_step(run)
    assert f"signing key: {key} {why}" in error, error
    meta = next(e for e in run.entries() if e["type"] == "run")
    assert "the configured key cannot sign" in str(meta), "the run folder does not say why it is not signed by it"
    if kind == "encrypted":  # the next step: an unencrypted copy, as the output says
        fix = re.search(r"`(openssl pkey -in \S+) -out <new file>`", output(refused))
        assert fix, output(refused)[-3000:]
        copy = tmp_path / "signing-key-unencrypted.pem"
        subprocess.run([*fix.group(1).split(), "-out", str(copy), "-passin", f"pass:{PASSPHRASE}"], check=True,
                       capture_output=True)
        complete(crm, environ={"ROTATION_SIGNING_KEY": str(copy)})
        return
    fix = re.search(r"`(openssl genpkey -algorithm ed25519 -out \S+)", output(refused))
    assert fix, output(refused)[-3000:]
    subprocess.run(["rm", "-rf", str(key)], check=True)
    subprocess.run(fix.group(1).split(), check=True, capture_output=True)  # the next step, as the output says
    complete(crm, environ={"ROTATION_SIGNING_KEY": str(key)})


def test_a_database_that_does_not_answer_is_a_finding_listed_with_the_others_not_a_traceback(crm: LiveCrm) -> None:
    """A wrong port in --dsn and a missing .env: both named in the first step's refusal with their fixes (the
    database in libpq's words), nothing changed, no traceback through the library; the next step says to fix the
    cause. With both fixed, the same command completes."""
    env_before = crm.env_file.read_bytes()
    closed = make_conninfo(crm.dsn, port=str(free_port()))
    wrong = dataclasses.replace(crm, dsn=closed, extra=(*crm.extra, f"--env-file={crm.env_file}.missing"))

    refused = wrong.rotate()

    assert refused.returncode == 1, output(refused)[-3000:]
    assert_nothing_changed(crm, env_before)
    [run] = crm.folders()
    error = refused_at_first_step(run)
    assert "the database: does not answer (connection failed:" in error and "Connection refused" in error, error
    assert "-> fix: check --dsn (host, port, database, role" in error, error
    assert f".env: {crm.env_file}.missing cannot be read" in error, error
    failures = output(refused).split("= FAILURES =", 1)[1].split("= next step =", 1)[0]
    assert "rotation/" not in failures and "psycopg/" not in failures, f"a traceback for bad input:\n{failures}"
    last = refused.stdout.rstrip().splitlines()[-1]  # printed last (stderr may carry pytest's warnings)
    assert last.startswith("SAFE (nothing changed)") and "(if a step above failed, fix its cause first)" in last, last
    complete(crm)


# --- the reports folder ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)


def test_a_full_reports_filesystem_is_refused_before_any_change(crm: LiveCrm) -> None:
    with tmpfs(crm.reports, "1m"):
        env_before = crm.env_file.read_bytes()

        refused = crm.rotate()

        assert refused.returncode != 0
        assert_nothing_changed(crm, env_before)
        [run] = crm.folders()  # the refusal's own folder still fits
        error = refused_at_first_step(run)
        assert f"reports folder: {crm.reports} has" in error and "KiB free, less than" in error, error
        assert f"free at least 8 MiB on the filesystem of {crm.reports}" in output(refused)

        remount(crm.reports, "size=64m")  # the next step: room on the reports filesystem
        complete(crm)


def test_a_read_only_reports_folder_is_refused_before_any_change(crm: LiveCrm) -> None:
    with tmpfs(crm.reports, "64m"):
        remount(crm.reports, "ro")
        env_before = crm.env_file.read_bytes()

        refused = crm.rotate()

        assert refused.returncode == 4, output(refused)[-3000:]  # refused before anything ran, as a usage error
        assert_nothing_changed(crm, env_before)
        assert not crm.folders() and "INTERNALERROR" not in output(refused)
        assert (f"refused before anything ran (nothing was changed): reports folder: {crm.reports} cannot be "
                "written (Read-only file system)") in output(refused), output(refused)[-3000:]
        assert f"make {crm.reports} writable" in output(refused)

        remount(crm.reports, "rw")  # the next step: a writable reports folder
        complete(crm)


# --- a missing privilege --------------------------------------------------------------------------------------------
@pytest.fixture
def foreign_owner(pg: StagingServer) -> Iterator[str]:
    """A role that owns the client table instead of the app's role (dropped after the scratch database)."""
    role = f"crm_owner_{int(time.time() * 1000) % 10**8}"
    with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
        if conn.info.server_version < 150000:
            pytest.skip("GRANT SET ON PARAMETER needs PostgreSQL 15")
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    yield role
    with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_a_missing_trigger_privilege_is_refused_naming_the_grant(pg: StagingServer, tmp_path: Path,
                                                                 foreign_owner: str) -> None:
    with live_crm(pg.admin_dsn, tmp_path, ROWS) as crm:
        role = app_role(crm.dsn)
        with psycopg.connect(admin_dsn(pg, crm.dsn), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER TABLE crm_client_preferences OWNER TO {}").format(
                sql.Identifier(foreign_owner)))
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON crm_client_preferences TO {}").format(
                sql.Identifier(role)))
        env_before = crm.env_file.read_bytes()

        refused = crm.rotate()

        assert refused.returncode != 0
        assert_nothing_changed(crm, env_before)
        error = refused_at_first_step(crm.folders()[-1])
        assert "triggers of crm_client_preferences" in error and f"owner: {foreign_owner}" in error, error
        grant = re.search(r"`(GRANT SET ON PARAMETER session_replication_role TO [^`]+)`", output(refused))
        assert grant and grant.group(1).endswith(role), output(refused)[-3000:]

        with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
            conn.execute(grant.group(1))  # the next step, as the refusal names it (by the server's superuser)
        complete(crm)
        triggers = [e["value"] for e in crm.folders()[-1].entries()
                    if e["type"] == "evidence" and e["name"] == "checked before any change"]
        assert "session_replication_role = replica" in str(triggers), triggers
        with psycopg.connect(admin_dsn(pg, crm.dsn), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER TABLE crm_client_preferences OWNER TO {}").format(sql.Identifier(role)))
