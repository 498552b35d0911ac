"""The runbook's "Troubleshooting" cases as diagnoses and repairs. Findings name lines, rows, columns and fingerprints;
never a credential or a line's content."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from rotation.core import envfile
from rotation.core.secret import fingerprint
from rotation.db_key import procedure as db_key
from rotation.db_key.reencrypt import CRM_PII, TableSpec
from rotation.troubleshooting import env_syntax

# The .env syntax check and the restore moved to rotation.troubleshooting.env_syntax; re-exported for the other
# troubleshooting steps until they import it from there (issue 9).
env_syntax_errors = env_syntax.env_syntax_errors
restore_newest_backup = env_syntax.restore_newest_backup


# --- decryption fails after a key rotation: values per key -------------------------------------------------------

CENSUS = """
SELECT col, under, count(*), array_agg(pk ORDER BY pk) FILTER (WHERE under = 'neither')
FROM (
    SELECT x.{pk}::text AS pk, c.col,
           CASE WHEN c.v IS NULL THEN 'null'
                WHEN rotation_runbook.try_decrypt(c.v, %(new)s) IS NOT NULL THEN 'new'
                WHEN rotation_runbook.try_decrypt(c.v, %(old)s) IS NOT NULL THEN 'old'
                ELSE 'neither' END AS under
    FROM {t} x, LATERAL (VALUES {values}) AS c(col, v)
) s
GROUP BY col, under
"""


@dataclass(frozen=True)
class KeyCensus:
    """How many values of each column each key opens. `neither` lists every (row id, column) no key opens."""

    table: str
    pk: str
    new_key_fp: str
    old_key_fp: str
    counts: Mapping[str, Mapping[str, int]]          # column -> {new, old, neither, null}
    neither: tuple[tuple[str, str], ...] = field(default=())  # (pk value, column), every one

    def total(self, under: str) -> int:
        return sum(c.get(under, 0) for c in self.counts.values())

    @property
    def non_null(self) -> int:
        return sum(self.total(u) for u in ("new", "old", "neither"))

    @property
    def complete(self) -> bool:
        return self.total("new") == self.non_null

    def summary(self) -> str:
        return (f"{self.table}: {self.non_null:,} encrypted values: {self.total('new'):,} under the new key "
                f"{self.new_key_fp}, {self.total('old'):,} under the old key {self.old_key_fp}, "
                f"{self.total('neither'):,} under neither; {self.total('null'):,} NULL")

    def neither_lines(self) -> list[str]:
        return [f"{self.pk}={pk} {column}" for pk, column in self.neither]


def key_census(conn: psycopg.Connection, new_key: str, old_key: str, spec: TableSpec = CRM_PII) -> KeyCensus:
    """One pass over every row and column: each value is tried with the new key, then the old one."""
    values = sql.SQL(", ").join(sql.SQL("({}, x.{})").format(sql.Literal(c), sql.Identifier(c)) for c in spec.columns)
    query = sql.SQL(CENSUS).format(pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table), values=values)
    counts: dict[str, dict[str, int]] = {c: {"new": 0, "old": 0, "neither": 0, "null": 0} for c in spec.columns}
    neither: list[tuple[str, str]] = []
    for column, under, n, pks in conn.execute(query, {"new": new_key, "old": old_key}).fetchall():
        counts[column][under] = int(n)
        neither += [(pk, column) for pk in pks or ()]
    conn.commit()
    return KeyCensus(spec.table, spec.pk, fingerprint(new_key), fingerprint(old_key), counts,
                     tuple(sorted(neither)))


def keys_for_repair(env_file: Path) -> db_key.Keys:
    """The new key from .env and the old one from the backups: through the recorded rotation state when there is
    one, else the newest backup whose key differs from .env's (a rotation done by hand, as the runbook's SQL does)."""
    try:
        return db_key.recover_keys(env_file)
    except db_key.ResumeError:
        pass
    new = envfile.get_value(env_file, db_key.ENV_NAME)
    for candidate in envfile.backups(env_file):
        old = envfile.read_env(candidate).get(db_key.ENV_NAME, "")
        if old and old != new:
            return db_key.Keys(old, new)
    raise db_key.ResumeError(f"no backup of {env_file.name} holds a key other than the current one "
                             f"({fingerprint(new)}): the old key is needed to finish the re-encryption")


# --- API calls fail after a token rotation: did the app reload? -----------------------------------------------------

TOKEN_FORMATS: Mapping[str, tuple[str, str]] = {
    # .env variable: (regular expression the whole value must match, what it means)
    "TWILIO_AUTH_TOKEN": (r"[0-9a-f]{32}", "32 hexadecimal digits"),
    "WHATSAPP_ACCESS_TOKEN": (r"[A-Za-z0-9_\-]{32,}", "32 or more URL-safe characters"),
}


def token_typos(name: str, value: str) -> list[str]:
    """What looks mistyped in a credential (quotes, spaces, line ends, the provider's format), never the value."""
    problems = []
    if value != value.strip():
        problems.append(f"{name} has leading or trailing whitespace")
    if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]:
        problems.append(f"{name} is wrapped in quotes that became part of the value")
    if any(not c.isprintable() for c in value):
        problems.append(f"{name} holds a non-printable character")
    pattern, meaning = TOKEN_FORMATS.get(name, (r".+", "non-empty"))
    if not re.fullmatch(pattern, value):
        problems.append(f"{name} is not {meaning} ({len(value)} characters)")
    return problems


def app_config_is_stale(env_loaded_at: float | None, env_file: Path) -> bool:
    """True when the running app loaded its configuration before .env last changed (it was never reloaded)."""
    if env_loaded_at is None:
        return True
    return float(env_loaded_at) < env_file.stat().st_mtime


def describe_mtime(path: Path) -> str:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).isoformat(timespec="seconds")
