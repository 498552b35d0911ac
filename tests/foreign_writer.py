"""A pytest plugin for fault tests: a writer the rotation does not know (a cron job under its own database role) writes
right after a named step, under the key it was configured with, and stays connected until the run ends.

Loaded into an operator's command with PYTEST_ADDOPTS="-p tests.foreign_writer" and armed with
ROTATION_TEST_WRITE_AFTER="<step text>", ROTATION_TEST_WRITER_DSN (the cron role's DSN), ROTATION_TEST_WRITER_KEY (the
key it writes under) and ROTATION_TEST_WRITER_ROWS ("id,id,..."). Each listed row's first encrypted column gets
`cron-<id>@example.com` under that key, as a cron job's nightly import would. Nothing in the product knows about it:
the database sees one more session of a role that may write the table.
"""

from __future__ import annotations

import os

import psycopg
import pytest

from rotation.core.database import connect, key_ref
from rotation.core.secret import Secret
from tests.rotation.live_crm import SPEC

WRITE_AFTER = "ROTATION_TEST_WRITE_AFTER"
APPLICATION = "nightly-import (cron)"
_held: list[psycopg.Connection] = []  # the writer's session, open until the process ends


def cron_plaintext(row_id: object) -> str:
    return f"cron-{row_id}@example.com"


def write(dsn: str, key: Secret, rows: list[str]) -> psycopg.Connection:
    """The cron job's write: one committed UPDATE per row, the session left open (idle)."""
    conn = connect(dsn, keys={"cron": key}, application_name=APPLICATION)
    for row in rows:
        conn.execute(f"UPDATE {SPEC.table} SET {SPEC.columns[0]} = pgp_sym_encrypt(%s, {key_ref('cron')}) "
                     f"WHERE {SPEC.pk} = %s", (cron_plaintext(row), row))
    conn.commit()
    return conn


def pytest_bdd_after_step(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                          step_func: object, step_func_args: dict[str, object]) -> None:
    if os.environ.get(WRITE_AFTER) != step.name:  # type: ignore[attr-defined]
        return
    _held.append(write(os.environ["ROTATION_TEST_WRITER_DSN"], Secret(os.environ["ROTATION_TEST_WRITER_KEY"]),
                       os.environ["ROTATION_TEST_WRITER_ROWS"].split(",")))
