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


# Sessions of any role that may write the inventory's tables (INSERT or UPDATE on one of them; a superuser may write
# every table): a cron job or a second service under a role the configuration does not name writes under whatever key
# it holds. A role sees pid, role and application_name of every session (the rest, backend_type included, only of its
# own: NULL there).
WRITERS = """
SELECT pid, usename::text, COALESCE(application_name, ''), COALESCE(host(client_addr), 'not visible to this role'),
       COALESCE(state, ''), COALESCE(backend_start::text, ''),
       ARRAY(SELECT t FROM unnest(%(tables)s::text[]) t
             WHERE to_regclass(t) IS NOT NULL AND has_table_privilege(a.usesysid, to_regclass(t), 'INSERT,UPDATE'))
FROM pg_stat_activity a
WHERE datname = current_database() AND COALESCE(backend_type, 'client backend') = 'client backend'
  AND pid <> pg_backend_pid() AND usesysid IS NOT NULL AND COALESCE(application_name, '') NOT LIKE %(ours)s
ORDER BY pid
"""
WRITERS_SOURCE = ("SELECT pid, usename, application_name FROM pg_stat_activity WHERE datname = current_database() AND "
                  "COALESCE(backend_type, 'client backend') = 'client backend' AND pid <> pg_backend_pid() AND "
                  f"application_name NOT LIKE '{APPLICATION_NAME}%', each with has_table_privilege(usesysid, "
                  "<inventory table>, 'INSERT,UPDATE'): sessions of any role that can write the inventory's tables")


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


@dataclass(frozen=True)
class Writer:
    """A connected session whose role may write some of the inventory's tables."""

    session: Session
    tables: tuple[str, ...]

    def line(self) -> str:
        return f"{self.session.line()} may write {', '.join(self.tables)}"


def writer_sessions(conn: psycopg.Connection, tables: list[str]) -> list[Writer]:
    """Every connected session (besides this rotation's) whose role may INSERT or UPDATE one of these tables."""
    rows = conn.execute(WRITERS, {"tables": tables, "ours": f"{APPLICATION_NAME}%"}).fetchall()
    conn.commit()
    return [Writer(Session(int(pid), str(role), str(name), str(client), str(state), str(since)), tuple(can))
            for pid, role, name, client, state, since, can in rows if can]


def foreign(writers: list[Writer], roles: tuple[str, ...]) -> list[Writer]:
    """The writers whose role is none of the app's: nothing the app's stop command stops."""
    return [w for w in writers if w.session.role not in roles]
