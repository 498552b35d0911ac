"""The app really is stopped: no session of its database role is connected (besides this rotation's own).

A health endpoint that stopped answering proves little (a second instance, a worker, a cron job may still write). The
database knows who is connected: pg_stat_activity, for the app's roles (the owners of the inventory's tables and the
user of DATABASE_URL in .env). A role sees the pid, application name and client address of its own sessions, so the
rotation's role (normally the app's own) can name each one. Sessions named `rotation-runbook...` are this suite's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from rotation.core import envfile
from rotation.core.config import Config
from rotation.core.database import APPLICATION_NAME

DATABASE_URL = "DATABASE_URL"  # where the app's .env names its database connection
ROLES = "SELECT DISTINCT c.relowner::regrole::text FROM pg_class c WHERE c.oid = ANY(%s::regclass[])"
SESSIONS = """
SELECT pid, usename::text, COALESCE(application_name, ''), COALESCE(host(client_addr), 'local socket'),
       COALESCE(state, ''), backend_start
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND usename::text = ANY(%(roles)s) AND COALESCE(application_name, '') NOT LIKE %(ours)s
ORDER BY pid
"""
SOURCE = ("SELECT pid, usename, application_name, client_addr, state FROM pg_stat_activity WHERE datname = "
          "current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND usename = ANY(<the "
          f"app's roles>) AND application_name NOT LIKE '{APPLICATION_NAME}%'")


@dataclass(frozen=True)
class Session:
    pid: int
    role: str
    application_name: str
    client: str
    state: str
    since: str

    def line(self) -> str:
        return (f"pid {self.pid} (role {self.role}, application_name '{self.application_name}', client "
                f"{self.client}, {self.state or 'state unknown'}, connected since {self.since})")


def app_roles(conn: psycopg.Connection, config: Config, env_file: Path) -> tuple[str, ...]:
    """The owners of the inventory's tables, and the user the app's DATABASE_URL connects as (when .env names one)."""
    found = [str(r[0]) for r in conn.execute(ROLES, ([e.table for e in config.encrypted_data],)).fetchall()]
    url = envfile.read_env(env_file).get(DATABASE_URL, "") if env_file.exists() else ""
    user = _user_of(url)
    conn.commit()
    return tuple(sorted({*found, *([user] if user else [])}))


def _user_of(url: str) -> str | None:
    if not url:
        return None
    try:
        user = conninfo_to_dict(url).get("user")
    except psycopg.ProgrammingError:
        return None
    return str(user) if user else None


def app_sessions(conn: psycopg.Connection, roles: tuple[str, ...]) -> list[Session]:
    rows = conn.execute(SESSIONS, {"roles": list(roles), "ours": f"{APPLICATION_NAME}%"}).fetchall()
    conn.commit()
    return [Session(int(pid), str(role), str(name), str(client), str(state), str(since))
            for pid, role, name, client, state, since in rows]
