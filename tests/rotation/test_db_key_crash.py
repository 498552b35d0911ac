"""Crash safety inside the re-encryption step (stop-the-world): SIGKILL the operator's `rotation db-key rotate
--stop-the-world` before its first page commits, or half-way through re-encrypting (each page writes its plaintext
digests in the statement that re-encrypts it), then run the same command again: every value reads back under
the new key equal to its plaintext before, none under the old, and both runs' evidence names the same rotation."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from rotation.evidence.verify import verify_folder
from staging.postgres import StagingServer
from tests.leakcheck import assert_no_fragment
from tests.rotation.live_crm import LiveCrm, live_crm

ROWS = 2000
PROGRESS = "SELECT coalesce(sum(rows_done), -1) FROM rotation_runbook.reencrypt_range"
REENCRYPT_STEP = "When all sensitive data is re-encrypted under the new key"


@pytest.fixture
def crm(pg: StagingServer, tmp_path: Path) -> Iterator[LiveCrm]:
    with live_crm(pg.admin_dsn, tmp_path, ROWS) as world:
        world.extra = ("--stop-the-world",  # the one pass re-encrypting in place (the staged way: test_db_key_staged)
                       "--take-over-lock")  # a killed run leaves its lock record: the operator takes it over
        yield world


WATCHER = "rotation-runbook (test: watches the rotation it is about to kill)"  # not a session of the app


def progress(dsn: str) -> int:
    with psycopg.connect(dsn, application_name=WATCHER) as conn:
        row = conn.execute(PROGRESS).fetchone()
        return int(row[0]) if row else -1


def kill_when(dsn: str, proc: subprocess.Popen[str], ready: Callable[[int], bool], timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = progress(dsn)
        if ready(done):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return done
        assert proc.poll() is None, f"the rotation finished before it could be killed:\n{proc.communicate()[0]}"
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the moment to kill never came")


@pytest.mark.parametrize("moment", ["before the first page commits", "mid re-encryption"])
def test_killed_inside_the_reencryption_the_same_command_finishes(crm: LiveCrm, moment: str) -> None:
    ready = (lambda n: n == 0) if moment == "before the first page commits" else (lambda n: 0 < n < ROWS // 2)
    done_at_kill = kill_when(crm.dsn, crm.popen(), ready)
    assert done_at_kill < ROWS

    again = crm.rotate()
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    new_key = crm.assert_rotated()
    assert_no_fragment({"output": again.stdout.encode()}, [crm.old_key.reveal(), new_key.reveal()])

    first, second = crm.folders()
    assert verify_folder(first.path).passed and verify_folder(second.path).passed
    assert first.scenario()["status"] == "error"
    assert f"during step '{REENCRYPT_STEP}'" in str(first.scenario()["reason"])
    assert first.rotation_ids() == second.rotation_ids() and len(second.rotation_ids()) == 1
    resumed = [e for e in second.entries() if e["type"] == "evidence" and str(e["name"]).startswith("re-encryption")]
    assert resumed and resumed[0]["value"]["resumed"] is True  # type: ignore[index]
