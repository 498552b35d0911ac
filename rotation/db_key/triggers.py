"""Re-encryption fires no trigger of the app: only ciphertext changes.

The CRM's BEFORE UPDATE triggers rewrite `updated_at` on every UPDATE, and its AFTER UPDATE trigger on
security_api_credentials logs a provider "rotation" whenever the ciphertext changes (see the CRM notes). A re-encryption
that fired them would rewrite every client's business timestamp and log rotations that never happened.

Two ways to keep them quiet, decided per table before anything is written, and applied inside each write transaction
so that a crash can never leave a trigger switched off:

    replica  SET LOCAL session_replication_role = replica: triggers in the default (origin) state do not fire.
             Needs superuser or, on PostgreSQL 15+, `GRANT SET ON PARAMETER session_replication_role`.
    owner    ALTER TABLE ... DISABLE TRIGGER <each enabled user trigger>, the write, then each trigger back to the
             state it had, all in one transaction. Needs ownership of the table. The statement takes a SHARE ROW
             EXCLUSIVE lock, so writes to the table run one transaction at a time (one worker).

A table whose triggers neither way can silence is refused before anything is written, naming the grant needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql

from rotation.core.database import may_set
from rotation.core.errors import RotationError

Mode = Literal["none", "replica", "owner"]

# tgenabled: O fires in origin and local mode, R only in replica mode, A always, D never.
_RESTORE = {"O": "ENABLE TRIGGER", "R": "ENABLE REPLICA TRIGGER", "A": "ENABLE ALWAYS TRIGGER"}
USER_TRIGGERS = """
SELECT t.tgname, t.tgenabled::text, pg_has_role(current_user, c.relowner, 'USAGE'), c.relowner::regrole::text
FROM pg_class c LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgenabled <> 'D'
WHERE c.oid = to_regclass(%s)
ORDER BY t.tgname
"""


class TriggerRefusal(RotationError, RuntimeError):
    """The role cannot keep a table's triggers from firing. Names the table, the triggers and the grant needed."""


@dataclass(frozen=True)
class TriggerGuard:
    """How one table's enabled user triggers are kept from firing during our writes."""

    table: str
    triggers: tuple[tuple[str, str], ...]  # (name, tgenabled) of every enabled user trigger
    mode: Mode

    @property
    def serial(self) -> bool:
        """Whether writes to the table must run one transaction at a time (the owner way locks the table)."""
        return self.mode == "owner"

    def begin(self, conn: psycopg.Connection) -> None:
        """First statements of a write transaction."""
        if self.mode == "replica":
            conn.execute("SET LOCAL session_replication_role = replica")
        elif self.mode == "owner":
            for name, _ in self.triggers:
                conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(
                    sql.Identifier(self.table), sql.Identifier(name)))

    def end(self, conn: psycopg.Connection) -> None:
        """Last statements of a write transaction, before its commit: every trigger back to its state."""
        if self.mode == "owner":
            for name, enabled in self.triggers:
                conn.execute(sql.SQL("ALTER TABLE {} {} {}").format(
                    sql.Identifier(self.table), sql.SQL(_RESTORE[enabled]), sql.Identifier(name)))

    def describe(self) -> str:
        names = ", ".join(name for name, _ in self.triggers) or "none"
        how = {"none": "no enabled trigger: nothing to keep from firing",
               "replica": "SET LOCAL session_replication_role = replica in every write transaction",
               "owner": "ALTER TABLE ... DISABLE TRIGGER, then back to its state, inside every write transaction "
                        "(table owner; the table lock makes the writes run one at a time)"}[self.mode]
        return f"{self.table} triggers ({names}): {how}"


def may_set_replica(conn: psycopg.Connection) -> bool:
    """Whether this role may SET session_replication_role (superuser, or granted SET ON PARAMETER), read from the
    catalog: a refused SET would write an ERROR line to the server log on every run."""
    return may_set(conn, "session_replication_role")


def guard_for(conn: psycopg.Connection, table: str) -> TriggerGuard:
    """The way to keep this table's enabled user triggers from firing, or TriggerRefusal before anything is written."""
    rows = conn.execute(USER_TRIGGERS, (table,)).fetchall()
    if not rows:
        raise TriggerRefusal(f"table {table} does not exist")
    owns, owner = bool(rows[0][2]), str(rows[0][3])
    triggers = tuple((str(name), str(enabled)) for name, enabled, _, _ in rows if name is not None)
    replica_fires = [name for name, enabled in triggers if enabled in ("R", "A")]
    if not triggers:
        mode: Mode = "none"
    elif not replica_fires and may_set_replica(conn):
        mode = "replica"
    elif owns:
        mode = "owner"
    else:
        user = conn.execute("SELECT current_user").fetchone()
        role = user[0] if user else "this role"
        why = (f"triggers {', '.join(replica_fires)} fire even in replica mode" if replica_fires
               else "it may not SET session_replication_role")
        raise TriggerRefusal(
            f"the re-encryption would fire the triggers of {table} ({', '.join(n for n, _ in triggers)}): {why}, "
            f"and it does not own {table} (owner: {owner}). Nothing was written. Grant one of: "
            f"`GRANT SET ON PARAMETER session_replication_role TO {role}` (PostgreSQL 15+), or ownership of {table} "
            f"(`ALTER TABLE {table} OWNER TO {role}`, or `GRANT {owner} TO {role}`)")
    if not conn.autocommit:
        conn.commit()
    return TriggerGuard(table, triggers, mode)
