"""Crash safety of the DB key rotation: SIGKILL the real `rotation db-key rotate` process mid-way, resume it,
and prove every value is readable with the new key and equal to its original plaintext."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from rotation.core import envfile
from staging.postgres import StagingServer
from staging.world import write_env
from tests.harness import PROJECT, seeded_crm

ROWS = 6000
PLAINTEXTS = """
SELECT client_id, decrypt_sensitive_data(email_encrypted, %(k)s), decrypt_sensitive_data(phone_number_encrypted, %(k)s),
       decrypt_sensitive_data(full_name_encrypted, %(k)s)
FROM crm_client_preferences ORDER BY client_id
"""
PROGRESS = "SELECT coalesce(sum(rows_done), -1) FROM rotation_runbook.reencrypt_range"


@pytest.fixture
def crm(pg: StagingServer, tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    with seeded_crm(pg.admin_dsn, ROWS) as (dsn, key):
        write_env(tmp_path / ".env", {"DATABASE_URL": dsn, "DB_ENCRYPTION_KEY": key})
        yield dsn, tmp_path / ".env", key


def rotation_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "rotation", "db-key", *args], cwd=PROJECT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def progress(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        try:
            return int(conn.execute(PROGRESS).fetchone()[0])
        except psycopg.errors.UndefinedTable:
            return -1


def kill_when(dsn: str, proc: subprocess.Popen[str], ready: Callable[[int], bool], timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = progress(dsn)
        if ready(done):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return done
        assert proc.poll() is None, f"rotation finished before it could be killed:\n{proc.stdout.read()}"
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the moment to kill never came")


@pytest.mark.parametrize("moment", ["during the digest snapshot", "mid re-encryption"])
def test_killed_rotation_resumes_with_every_value_intact(crm: tuple[str, Path, str], moment: str) -> None:
    dsn, env_file, old_key = crm
    with psycopg.connect(dsn) as conn:
        before = conn.execute(PLAINTEXTS, {"k": old_key}).fetchall()

    proc = rotation_cli("rotate", "--dsn", dsn, "--env-file", str(env_file), "--workers", "2")
    ready = (lambda n: n == 0) if moment == "during the digest snapshot" else (lambda n: 0 < n < ROWS // 2)
    done_at_kill = kill_when(dsn, proc, ready)
    assert done_at_kill < ROWS

    resumed = rotation_cli("resume", "--dsn", dsn, "--env-file", str(env_file))
    output, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, output
    assert f"{sum(v is not None for row in before for v in row[1:]):,} of" in output

    new_key = envfile.get_value(env_file, "DB_ENCRYPTION_KEY")
    assert new_key != old_key
    with psycopg.connect(dsn) as conn:
        after = conn.execute(PLAINTEXTS, {"k": new_key}).fetchall()
        still_old = conn.execute(
            "SELECT count(rotation_runbook.try_decrypt(v, %s)) FROM crm_client_preferences, "
            "LATERAL (VALUES (email_encrypted), (phone_number_encrypted), (full_name_encrypted)) c(v)",
            (old_key,)).fetchone()[0]
    assert after == before
    assert still_old == 0
    assert old_key not in output and new_key not in output
