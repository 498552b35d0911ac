"""The staging PostgreSQL: the DSN backend touches only its own scratch database; the private cluster is torn down
after Ctrl-C and reaped after SIGKILL. The backends' order and the error when none is there: test_server_lookup.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from staging import postgres
from staging.postgres import CLUSTER_PREFIX, StagingServer, scratch_database
from tests.harness import PROJECT


def databases(admin_dsn: str) -> set[str]:
    with psycopg.connect(admin_dsn) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


def test_dsn_backend_creates_and_drops_only_its_scratch_database(pg: StagingServer) -> None:
    before = databases(pg.admin_dsn)
    with scratch_database(pg.admin_dsn) as dsn:
        name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        assert name.startswith("rotation_scratch_") and name in databases(pg.admin_dsn)
    assert databases(pg.admin_dsn) == before


def owned_clusters(pid: int) -> list[Path]:
    roots = Path(tempfile.gettempdir()).glob(f"{CLUSTER_PREFIX}*")
    return [r for r in roots if (r / "owner.pid").exists() and (r / "owner.pid").read_text() == str(pid)]


def wait_for(condition, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def start_suite() -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "ROTATION_DSN"} | {"PYTHONFAULTHANDLER": "1"}
    reports = tempfile.mkdtemp(prefix="rotation-reports-")
    return subprocess.Popen([sys.executable, "-m", "pytest", "rotation_suite/steps/test_rotation.py", "-k",
                             "scheduled_90day", "--rows", "20000", f"--reports-dir={reports}"],
                            cwd=PROJECT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_private_cluster_is_removed_after_ctrl_c() -> None:
    proc = start_suite()
    wait_for(lambda: owned_clusters(proc.pid) and (owned_clusters(proc.pid)[0] / "data" / "postmaster.pid").exists())
    cluster = owned_clusters(proc.pid)[0]
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # say where the suite hangs: faulthandler dumps every thread on SIGABRT
        proc.send_signal(signal.SIGABRT)
        output, _ = proc.communicate(timeout=30)
        pytest.fail(f"the suite did not exit within 60 s of Ctrl-C; its threads:\n{output[-6000:]}")
    assert not cluster.exists(), "the private cluster outlived Ctrl-C"


def test_cluster_left_by_a_killed_run_is_reaped() -> None:
    proc = start_suite()
    wait_for(lambda: owned_clusters(proc.pid) and (owned_clusters(proc.pid)[0] / "data" / "postmaster.pid").exists())
    cluster = owned_clusters(proc.pid)[0]
    proc.kill()
    proc.communicate(timeout=30)
    assert cluster.exists()
    postgres.reap_orphan_clusters()
    assert not cluster.exists(), "the orphaned cluster was not reaped"
