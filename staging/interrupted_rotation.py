"""Staging trouble for "Decryption fails after key rotation": the operator's `rotation db-key rotate`, killed with
SIGKILL part-way through the re-encryption, and (when asked) one value no key opens.

One client row is held locked so the worker on its range blocks; once every other range is done the command is killed
and its server sessions ended. The data is then split between the two keys exactly as a crash leaves it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from rotation.core.database import connect, key_ref
from rotation.core.deployment import Deployment
from rotation.core.keys import generate_key
from rotation.core.proof import Evidence, require
from rotation.db_key.reencrypt import TableSpec, pgcrypto_specs

PROJECT = Path(__file__).resolve().parents[1]
APPLICATION_NAME = "rotation-runbook"  # rotation.core.database.connect's default: the rotation's sessions
# The session holding the row lock plays a part of the rotation (its stalled batch), not the app: it is named as the
# rotation's, so the rotation's check that no session of the app's role is connected does not count it.
LOCK_SESSION = f"{APPLICATION_NAME} (staging: holds one row so that the rotation can be killed part-way)"
WATCH_SESSION = f"{APPLICATION_NAME} (staging: watches the rotation it is about to kill)"
TEST_VARIABLES = ("PYTEST_ADDOPTS", "ROTATION_SABOTAGE", "ROTATION_TEST_KILL_AFTER", "ROTATION_TEST_KILL_BEFORE")
RUNNING_RANGES = ("SELECT count(*) FILTER (WHERE done), count(*), COALESCE(sum(rows_done), 0) "
                  "FROM rotation_runbook.reencrypt_range r JOIN rotation_runbook.reencrypt_job j USING (job_id) "
                  "WHERE j.status = 'running'")


class InterruptedDbKeyRotation:
    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.spec: TableSpec = pgcrypto_specs(deployment.config)[0]
        self.victim: str | None = None  # the row id the killed rotation had not reached
        self.broken: list[tuple[str, str, str]] = []  # (table, row id, column) no key opens

    def command(self) -> list[str]:
        app, d = self.deployment.app, self.deployment
        return [sys.executable, "-m", "rotation", "db-key", "rotate", f"--dsn={d.dsn}", f"--env-file={d.env_file}",
                f"--app-start={app.start}", f"--app-stop={app.stop}", f"--app-restart={app.restart}",
                f"--app-reload={app.reload}", f"--health-url={app.health_url}", "--workers=2",
                "--operator=staging-killed-run", "--change-id=STAGING-TROUBLE", "--approver=staging",
                f"--reports-dir={d.env_file.parent / 'killed-run-reports'}", f"--signing-key={self.signing_key()}",
                "--allow-staging-endpoints", "--confirm-live",
                "--stop-the-world"]  # the runbook's way: interrupted while it re-encrypts the table in place

    def signing_key(self) -> Path:
        """A live run signs with a configured key: the staging world's own, generated once beside its .env."""
        path = self.deployment.env_file.parent / "killed-run-signing-key.pem"
        if not path.exists():
            key = Ed25519PrivateKey.generate()
            path.touch(mode=0o600)
            path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return path

    def run(self, evidence: Evidence, timeout_s: float = 90) -> None:
        """Given: the operator's command died part-way through re-encrypting the data."""
        dsn = self.deployment.dsn
        first = sql.Identifier(self.spec.columns[0])
        with psycopg.connect(dsn, application_name=LOCK_SESSION) as lock:
            row = lock.execute(sql.SQL("SELECT max({pk}) FROM {t} WHERE {c} IS NOT NULL").format(
                pk=sql.Identifier(self.spec.pk), t=sql.Identifier(self.spec.table), c=first)).fetchone()
            self.victim = str(row[0]) if row else None
            lock.execute(sql.SQL("SELECT 1 FROM {t} WHERE {pk} = %s FOR UPDATE").format(
                t=sql.Identifier(self.spec.table), pk=sql.Identifier(self.spec.pk)), (self.victim,))
            env = {k: v for k, v in os.environ.items() if k not in TEST_VARIABLES}
            proc = subprocess.Popen(self.command(), cwd=PROJECT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            try:
                _wait_until_blocked(dsn, proc, timeout_s)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            with psycopg.connect(dsn, autocommit=True, application_name=WATCH_SESSION) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                              "current_database() AND application_name = %s AND pid <> pg_backend_pid()",
                              (APPLICATION_NAME,))  # the killed command's own sessions, not the lock's
            lock.rollback()
        with psycopg.connect(dsn, application_name=WATCH_SESSION) as conn:
            done, ranges, rows = (int(n) for n in conn.execute(RUNNING_RANGES).fetchone() or (0, 0, 0))
        evidence.record("interrupted re-encryption", {"ranges done": done, "ranges": ranges, "rows re-encrypted": rows,
                                                      "row held locked": f"{self.spec.pk}={self.victim}"},
                        source="`rotation db-key rotate` killed with SIGKILL while its worker waited on a row lock; "
                               + RUNNING_RANGES)
        require(0 < done < ranges, f"the rotation was not interrupted part-way: {done} of {ranges} ranges done")

    def break_unreached_value(self, evidence: Evidence) -> None:
        """Given: the value the rotation had not reached yet is under neither key (encrypted with a third one)."""
        column = self.spec.columns[0]
        third = generate_key()
        evidence.register_secret(third)
        with connect(self.deployment.dsn, application_name=WATCH_SESSION, keys={"third": third}) as conn:
            conn.execute(sql.SQL("UPDATE {t} SET {c} = pgp_sym_encrypt(%s, " + key_ref("third") + ") WHERE {pk} = %s"
                                 ).format(t=sql.Identifier(self.spec.table), c=sql.Identifier(column),
                                          pk=sql.Identifier(self.spec.pk)), ("unrecoverable@example.com", self.victim))
            conn.commit()
        self.broken = [(self.spec.table, str(self.victim), column)]
        evidence.record("value under neither key", {"table": self.spec.table, self.spec.pk: self.victim,
                                                    "column": column},
                        source="UPDATE ... SET <column> = pgp_sym_encrypt(<text>, <a third key>) (staging only)")


def _wait_until_blocked(dsn: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Until the only unfinished range is the one waiting on the lock."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True, application_name=WATCH_SESSION) as conn:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = proc.stderr.read().decode(errors="replace")[-800:] if proc.stderr else ""
                raise RuntimeError(f"`rotation db-key rotate` ended (exit {proc.returncode}) before it could be "
                                   f"interrupted: {tail}")
            waiting = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                                   "application_name = %s AND wait_event_type = 'Lock'",
                                   (APPLICATION_NAME,)).fetchone()
            left = None
            if _has_jobs(conn):
                row = conn.execute(RUNNING_RANGES).fetchone()
                left = row[1] - row[0] if row else None
            if waiting and waiting[0] and left == 1:
                return
            time.sleep(0.05)
    raise RuntimeError("the rotation never blocked on the locked row")


def _has_jobs(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('rotation_runbook.reencrypt_range') IS NOT NULL").fetchone()
    return bool(row and row[0])
