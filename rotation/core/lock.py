"""One rotation at a time on a database: the run lock.

Two operators starting a rotation of the same database at once would both run every step (deadlocks, one run's side
table dropped under the other, a state file left naming no current key). So a run holds a lock for its whole length:

    the lock    a session-level PostgreSQL advisory lock on the app's database (pg_try_advisory_lock, never waited
                for), taken on a connection of its own that stays open until the run ends. The server drops it when
                that session ends, however the run ends (a kill -9, a lost connection).
    the record  one row in rotation_runbook.run_lock naming the holder: operator, change id, procedure, host, pid,
                start time and the lock's backend pid. A second operator is refused at once with that line. The row
                outlives a holder killed with SIGKILL; a row whose advisory lock is free is a stale lock, and the next
                run is refused naming it until it is taken over explicitly (`--take-over-lock`): whether the holder is
                really gone (another host, a hung process) is for a person to say, and the evidence says they did.

Any procedure may hold it (the DB key rotation now, the emergency procedure later): `RunLock(dsn, operator=...,
change_id=..., procedure=...)`, then `take()` (the advisory lock; nothing needs the suite's schema yet, so two first
runs never race to create it), the schema step, `claim()` (the record), and `release()` at the end of the run.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass

import psycopg

from rotation.core.database import connect
from rotation.core.proof import CheckFailed

# pg_try_advisory_lock(int4, int4): the suite's class ('rota' as an int4) and the lock's number. Advisory locks are
# per database, so the same pair on another database is another lock.
LOCK_CLASS = 0x726F7461
LOCK_ID = 1
LOCK_NAME = "rotation"
TAKE_OVER_OPTION = "--take-over-lock"

TRY_LOCK = "SELECT pg_try_advisory_lock(%s, %s), pg_backend_pid()"
UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"
# The session holding the advisory lock, as any role may see it (pg_locks is readable by all; pg_stat_activity shows
# another role's user name and application name, not its query).
HOLDING_SESSION = """
SELECT l.pid, a.usename::text, a.application_name, a.backend_start
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 2 AND l.granted
"""
# The record's table exists and this role may read it (from the catalog: to_regclass fails without USAGE on the schema)
RECORD_READABLE = ("SELECT COALESCE(bool_or(has_table_privilege(c.oid, 'SELECT')), false) FROM pg_class c "
                   "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'rotation_runbook' "
                   "AND c.relname = 'run_lock' AND has_schema_privilege(n.oid, 'USAGE')")
RECORD = ("SELECT run_id, procedure, operator, change_id, host, pid, backend_pid, started_at "
          "FROM rotation_runbook.run_lock WHERE lock_name = %s")
SOURCE = (f"SELECT pg_try_advisory_lock({LOCK_CLASS}, {LOCK_ID}) on a connection of its own, kept open for the run "
          "(session-level: the server drops it when that session ends); rotation_runbook.run_lock: one row naming "
          "the holder (INSERT ... ON CONFLICT (lock_name) DO UPDATE only when taken over); pg_locks and "
          "pg_stat_activity for the session holding it")


class LockRefused(CheckFailed):
    """Another run holds the lock, or a stale record needs an explicit take-over. Nothing was changed."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) the run lock."""

    run_id: str
    procedure: str
    operator: str
    change_id: str | None
    host: str
    pid: int
    backend_pid: int
    started_at: dt.datetime

    def line(self) -> str:
        started = self.started_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (f"{self.operator} (change {self.change_id or '-'}, {self.procedure}) on host {self.host}, pid "
                f"{self.pid}, since {started}")

    def as_evidence(self) -> dict[str, object]:
        return {"operator": self.operator, "change id": self.change_id, "procedure": self.procedure,
                "host": self.host, "pid": self.pid, "started": self.started_at.isoformat(timespec="seconds"),
                "run": self.run_id, "lock session (backend pid)": self.backend_pid}


@dataclass(frozen=True)
class Claimed:
    """What claim() did: the record written, and the stale holder it replaced, if any."""

    holder: Holder
    taken_over: Holder | None


class RunLock:
    """The run lock of one database, for one run. Not thread-safe; one per run."""

    def __init__(self, dsn: str, *, operator: str, change_id: str | None, procedure: str,
                 take_over: bool = False) -> None:
        self.dsn = dsn
        self.operator = operator
        self.change_id = change_id
        self.procedure = procedure
        self.take_over = take_over
        self.run_id = str(uuid.uuid4())
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._conn: psycopg.Connection | None = None
        self._backend_pid: int | None = None
        self.claimed: Claimed | None = None

    @property
    def held(self) -> bool:
        """Whether this run holds the advisory lock (its session is still open)."""
        return _usable(self._conn)

    def take(self) -> None:
        """The advisory lock, at once or never (a second operator is not made to wait): LockRefused naming the
        holder when another session has it. Taking it again in the same run is a no-op."""
        if self.held:
            return
        conn = connect(self.dsn, autocommit=True, application_name=self._application_name())
        row = conn.execute(TRY_LOCK, (LOCK_CLASS, LOCK_ID)).fetchone()
        if row is None or not row[0]:
            holder = describe_holder(conn)
            conn.close()
            raise LockRefused(f"another rotation holds the run lock of this database: {holder}. Nothing was changed. "
                              "Wait for it to finish (one rotation at a time), then run this command again")
        self._conn, self._backend_pid = conn, int(row[1])

    def claim(self) -> Claimed:
        """The record naming this run, once the suite's schema exists. A record left by a run whose lock is gone
        (we hold the advisory lock, so its session ended) is replaced only with take_over; otherwise the advisory
        lock is let go and LockRefused names the stale holder and the option."""
        if self.claimed is not None:
            return self.claimed
        conn = self._require_conn()
        stale = read_record(conn)
        if stale is not None and stale.run_id != self.run_id and not self.take_over:
            self.release()
            raise LockRefused(
                f"a stale run lock: {stale.line()} started a rotation whose lock session is gone (killed, or its "
                "connection lost) and left its record. Nothing was changed. If that run is really over (no process "
                f"{stale.pid} on {stale.host} still working), run this command again with {TAKE_OVER_OPTION}")
        row = conn.execute(
            "INSERT INTO rotation_runbook.run_lock (lock_name, run_id, procedure, operator, change_id, host, pid, "
            "backend_pid) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (lock_name) DO UPDATE SET "
            "run_id = EXCLUDED.run_id, procedure = EXCLUDED.procedure, operator = EXCLUDED.operator, "
            "change_id = EXCLUDED.change_id, host = EXCLUDED.host, pid = EXCLUDED.pid, "
            "backend_pid = EXCLUDED.backend_pid, started_at = now() RETURNING started_at",
            (LOCK_NAME, self.run_id, self.procedure, self.operator, self.change_id, self.host, self.pid,
             self._backend_pid)).fetchone()
        started = row[0] if row else dt.datetime.now(dt.UTC)
        holder = Holder(self.run_id, self.procedure, self.operator, self.change_id, self.host, self.pid,
                        self._backend_pid or 0, started)
        self.claimed = Claimed(holder, stale if stale is not None and stale.run_id != self.run_id else None)
        return self.claimed

    def require_held(self) -> None:
        """Before a change: the lock's session still answers. A lost connection (a database restart) lets the server
        drop the advisory lock, and another run could hold it by now: LockRefused, before anything changes."""
        try:
            conn = self._require_conn()
            conn.execute("SELECT 1")
        except psycopg.Error:
            raise LockRefused("the run lock's database session was lost (a database restart or a broken connection): "
                              "nothing further was changed by this run; run the same command again") from None
        if self.claimed is None:
            raise LockRefused("the run lock was taken but its record was never written: run the command again")

    def release(self) -> None:
        """End of the run: this run's record deleted (only this run's: after a lost lock session another run may
        hold the lock by now), then the advisory lock let go and its session closed. Idempotent, never raises: the
        end of a session drops the advisory lock anyway, and a record left behind is a stale lock, refused and named
        by the next run."""
        conn, self._conn = self._conn, None
        try:
            if self.claimed is not None:
                self._delete_record(conn)
            if _usable(conn):
                conn.execute(UNLOCK, (LOCK_CLASS, LOCK_ID))  # type: ignore[union-attr]
        except psycopg.Error:
            pass
        finally:
            if conn is not None:
                conn.close()
            self.claimed = None

    def _delete_record(self, conn: psycopg.Connection | None) -> None:
        delete = "DELETE FROM rotation_runbook.run_lock WHERE lock_name = %s AND run_id = %s"
        if conn is not None and _usable(conn):
            try:
                conn.execute(delete, (LOCK_NAME, self.run_id))
                return
            except psycopg.OperationalError:
                pass  # its session died with a database restart (psycopg learns it only now): a fresh one deletes it
        with connect(self.dsn, autocommit=True) as fresh:
            fresh.execute(delete, (LOCK_NAME, self.run_id))

    def _require_conn(self) -> psycopg.Connection:
        if not self.held or self._conn is None:
            raise LockRefused("the run lock was not taken, or its session was lost: run the command again")
        return self._conn

    def _application_name(self) -> str:
        """What pg_stat_activity shows for the lock session, to a second operator's refusal (at most 63 bytes)."""
        return f"rotation-runbook lock: {self.operator} {self.change_id or ''}".strip()[:63]


def _usable(conn: psycopg.Connection | None) -> bool:
    return conn is not None and not conn.closed and not conn.broken


def read_record(conn: psycopg.Connection) -> Holder | None:
    """The record of the lock, if the schema has one (a database on day one has no schema yet, hence no record)."""
    exists = conn.execute(RECORD_READABLE).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(RECORD, (LOCK_NAME,)).fetchone()
    if not conn.autocommit:
        conn.commit()
    if row is None:
        return None
    return Holder(str(row[0]), str(row[1]), str(row[2]), row[3], str(row[4]), int(row[5]), int(row[6]), row[7])


def describe_holder(conn: psycopg.Connection) -> str:
    """The holder in one line: the record when its lock session is the one holding the lock, else what the server
    says of the session (a holder that has not written its record yet)."""
    session = conn.execute(HOLDING_SESSION, (LOCK_CLASS, LOCK_ID)).fetchone()
    record = read_record(conn)
    if record is not None and (session is None or int(session[0]) == record.backend_pid):
        return record.line()
    if session is None:
        return "a session that has just let it go (try again)"
    return (f"database session {session[0]} of role {session[1] or '?'} ({session[2] or 'no application name'}"
            + (f", since {session[3].astimezone(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}" if session[3] else "")
            + ")")
