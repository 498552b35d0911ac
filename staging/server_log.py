"""Staging's PostgreSQL server set to log every statement of the CRM database (the Best Practices scenario searches
that log for keys). Only staging may change the server's logging: the suite owns the server."""

from __future__ import annotations

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from rotation.core.database import connect
from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence

LOG_EVERYTHING = {"log_statement": "all", "log_min_duration_statement": "0"}


def log_every_statement(deployment: Deployment, admin_dsn: str, evidence: Evidence) -> None:
    """Every new session of the CRM database logs each statement, and its duration, to the server log. Set by the
    server's superuser (admin_dsn): the app's role, which the world's DSN connects as, may not."""
    dbname = conninfo_to_dict(deployment.dsn)["dbname"]
    with connect(admin_dsn, autocommit=True) as conn:
        for setting, value in LOG_EVERYTHING.items():
            conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(str(dbname)), sql.Identifier(setting), sql.Literal(value)))
    evidence.record("server logging", LOG_EVERYTHING, source=f"ALTER DATABASE {dbname} SET ... (new sessions)")
