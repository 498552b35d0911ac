"""The app's own Fernet values under DB_ENCRYPTION_KEY: security_api_credentials.credential_key_encrypted.

The app encrypts provider credentials in Python (`encrypt_api_credential`), with the Fernet key
`urlsafe_b64encode(sha256(DB_ENCRYPTION_KEY))` (see the CRM notes). A DB key rotation that left them under the old
key would leave the app unable to read them. They are re-encrypted here with `MultiFernet([new, old]).rotate`, which
keeps each token's timestamp, in the same job bookkeeping as the pgcrypto columns: digests of every plaintext (HMAC
under the new key) and of every row's other columns before, one transaction per page with the table's triggers kept
quiet, every value and row checked after. Plaintext exists only in this process's memory, never in a record.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from psycopg import sql

from rotation.core.config import Config, StrengthPolicy
from rotation.core.database import connect
from rotation.core.progress import Meter, ProgressCallback
from rotation.core.secret import Secret
from rotation.db_key import unopened
from rotation.db_key.reencrypt import (
    APP_MINIMUM,
    DIGEST_SETTINGS,
    SAMPLE_SIZE,
    JobResult,
    ReencryptionError,
    TableSpec,
    job_guard,
    other_columns_digest,
    start_or_resume_job,
    with_others,
)
from rotation.db_key.triggers import TriggerGuard
from rotation.db_key.verify import ROWS_CHANGED, ROWS_UNKNOWN, ColumnCheck, Finding, PopulationCheck

PAGE = 200
FERNET_CIPHER = "Fernet (AES-128-CBC + HMAC-SHA256), key urlsafe_b64encode(sha256(DB_ENCRYPTION_KEY))"


def fernet_specs(config: Config) -> tuple[TableSpec, ...]:
    """The encrypted-data inventory's Fernet columns, one spec per table."""
    return tuple(TableSpec(e.table, e.key, e.columns) for e in config.encrypted_data if e.kind == "fernet")


def app_fernet(db_key: Secret) -> Fernet:
    """The app's derivation (encrypt_api_credential): Fernet key = urlsafe_b64encode(sha256(key))."""
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(db_key.reveal().encode()).digest()))


def opens(db_key: Secret, token: bytes) -> bool:
    try:
        app_fernet(db_key).decrypt(token)
    except InvalidToken:
        return False
    return True


def _token(value: object) -> bytes:
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else str(value).encode()


def _stored(token: bytes, like: object) -> object:
    """The token in the column's own type: bytea stays bytes, text stays str."""
    return token if isinstance(like, bytes | bytearray | memoryview) else token.decode()


def _pages(conn: psycopg.Connection, spec: TableSpec) -> Iterator[list[tuple[object, ...]]]:
    """Every row's (pk, values...) in keyset pages, each page read in its own statement."""
    ids = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table),
           "cols": sql.SQL(", ").join(map(sql.Identifier, spec.columns))}
    first = sql.SQL("SELECT {pk}, {cols} FROM {t} ORDER BY {pk} LIMIT %(n)s").format(**ids)
    after = sql.SQL("SELECT {pk}, {cols} FROM {t} WHERE {pk} > %(after)s ORDER BY {pk} LIMIT %(n)s").format(**ids)
    rows = conn.execute(first, {"n": PAGE}).fetchall()
    while rows:
        yield rows
        rows = conn.execute(after, {"after": rows[-1][0], "n": PAGE}).fetchall() if len(rows) == PAGE else []


def find_unopened(conn: psycopg.Connection, spec: TableSpec, old_key: Secret,
                  new_key: Secret) -> list[unopened.Unopened]:
    """The values of the spec's columns that open with neither key (as the app derives its Fernet key), before the
    app stops: named, then refused or left as found (rotation.db_key.unopened)."""
    tokens = ((row[0], column, _token(value)) for page in _pages(conn, spec) for row in page
              for column, value in zip(spec.columns, row[1:], strict=True) if value is not None)
    found = unopened.find_fernet(conn, spec, old_key, new_key, opens, tokens)
    conn.commit()
    return found


def _digest(new_key: Secret, plaintext: bytes) -> bytes:
    return hmac.new(new_key.reveal().encode(), plaintext, hashlib.sha256).digest()


def _plaintext(spec: TableSpec, column: str, pk: object, value: object, old_key: Secret, new_key: Secret) -> bytes:
    try:
        return MultiFernet([app_fernet(old_key), app_fernet(new_key)]).decrypt(_token(value))
    except InvalidToken:
        raise ReencryptionError(f"{spec.table}.{column} {spec.pk}={pk} opens with neither the old nor the new key "
                                "(as the app derives its Fernet key): nothing was written") from None


def _snapshot(conn: psycopg.Connection, spec: TableSpec, job_id: int, old_key: Secret, new_key: Secret) -> None:
    """Digests of every value's plaintext and every row's other columns, once per job, before anything is written."""
    left = unopened.left_values(conn, new_key, spec)  # values no key opens, left as found: no digest
    with conn.transaction():
        taken = conn.execute("SELECT snapshot_taken FROM rotation_runbook.reencrypt_job WHERE job_id = %s FOR UPDATE",
                             (job_id,)).fetchone()
        if not taken or taken[0]:
            return
        spec = with_others(conn, spec)
        for setting in DIGEST_SETTINGS:
            conn.execute(setting)
        digests = [(job_id, str(row[0]), [None if value is None or unopened.still_left(left, row[0], column,
                                                                                        _token(value)) else
                                          _digest(new_key, _plaintext(spec, column, row[0], value, old_key, new_key))
                                          for column, value in zip(spec.columns, row[1:], strict=True)])
                   for page in _pages(conn, spec) for row in page]
        conn.cursor().executemany("INSERT INTO rotation_runbook.row_digest (job_id, pk, digests) "
                                  "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", digests)
        conn.execute(sql.SQL("UPDATE rotation_runbook.row_digest d SET other = {digest} FROM {t} x "
                             "WHERE d.job_id = %s AND d.pk = x.{pk}::text").format(
                                 pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table),
                                 digest=other_columns_digest(spec, "x")), (job_id,))
        conn.execute("UPDATE rotation_runbook.reencrypt_job SET snapshot_taken = true WHERE job_id = %s", (job_id,))


def _rotate_page(conn: psycopg.Connection, spec: TableSpec, page: list[tuple[object, ...]], old_key: Secret,
                 new_key: Secret, guard: TriggerGuard, job_id: int,
                 left: dict[tuple[str, str], bytes] | None = None) -> int:
    """Re-encrypt the page's values that do not open with the new key yet (values left as found, unchanged, are
    kept as they are); one transaction with its checkpoint."""
    rotator = MultiFernet([app_fernet(new_key), app_fernet(old_key)])
    updates: list[tuple[str, tuple[object, object]]] = []
    for row in page:
        for column, value in zip(spec.columns, row[1:], strict=True):
            if value is None or opens(new_key, _token(value)):
                continue
            if left and unopened.still_left(left, row[0], column, _token(value)):
                continue
            try:
                rotated = rotator.rotate(_token(value))
            except InvalidToken:
                raise ReencryptionError(f"re-encryption of {spec.table} stopped: {spec.table}.{column} "
                                        f"{spec.pk}={row[0]} opens with neither key (under neither key). Nothing of "
                                        "its page was written; the job resumes from there.") from None
            updates.append((column, (_stored(rotated, value), row[0])))
    with conn.transaction():
        guard.begin(conn)
        for column in spec.columns:
            params = [p for c, p in updates if c == column]
            if params:
                conn.cursor().executemany(sql.SQL("UPDATE {t} SET {c} = %s WHERE {pk} = %s").format(
                    t=sql.Identifier(spec.table), c=sql.Identifier(column), pk=sql.Identifier(spec.pk)), params)
        conn.execute("UPDATE rotation_runbook.reencrypt_range SET rows_done = rows_done + %s, cursor = %s "
                     "WHERE job_id = %s AND range_no = 0", (len(updates), str(page[-1][0]), job_id))
        guard.end(conn)
    return len(updates)


def reencrypt_fernet(dsn: str, old_key: Secret, new_key: Secret, *, spec: TableSpec,
                     policy: StrengthPolicy = APP_MINIMUM, on_progress: ProgressCallback | None = None) -> JobResult:
    """Every Fernet value of the spec's columns under the new key (values already there are left alone, so a rerun
    after a kill finishes the job). Refuses before writing when a value opens with neither key. `on_progress` hears
    of every page of rows."""
    started = time.monotonic()
    with connect(dsn) as conn:
        job_id, resumed = start_or_resume_job(conn, spec, old_key, new_key, ranges=1, policy=policy, kind="fernet")
        _snapshot(conn, spec, job_id, old_key, new_key)
        guard = job_guard(conn, spec, job_id)
        left = unopened.left_values(conn, new_key, spec)
        pages = list(_pages(conn, spec))
        total, done = sum(len(page) for page in pages), 0
        meter = Meter(total, on_progress)
        for page in pages:
            done += _rotate_page(conn, spec, page, old_key, new_key, guard, job_id, left)
            meter.add(len(page))
        conn.execute("UPDATE rotation_runbook.reencrypt_range SET done = true WHERE job_id = %s", (job_id,))
        conn.execute("UPDATE rotation_runbook.reencrypt_job SET status = 'done', finished_at = now() "
                     "WHERE job_id = %s AND status = 'running'", (job_id,))
        conn.commit()
    meter.finish()
    return JobResult(job_id, total, done, resumed, time.monotonic() - started, (), guard.describe(), 1)


@dataclass
class _Tally:
    nulls_kept: int = 0
    verified: int = 0
    old: int = 0
    left: int = 0  # values no key opens, left as found (unchanged): never verified


def verify_fernet(conn: psycopg.Connection, spec: TableSpec, job_id: int, old_key: Secret, new_key: Secret,
                  *, limit: int = 10) -> PopulationCheck:
    """Every value of the whole table opens with the new key to its digested plaintext and not with the old; every
    row known to the snapshot and unchanged in its other columns."""
    left = unopened.left_values(conn, new_key, spec)
    with conn.transaction():
        spec = with_others(conn, spec)
        for setting in DIGEST_SETTINGS:
            conn.execute(setting)
        digests = {(str(pk), column): d for pk, ds in conn.execute(
            "SELECT pk, digests FROM rotation_runbook.row_digest WHERE job_id = %s", (job_id,))
            for column, d in zip(spec.columns, ds, strict=True)}
        tallies = {c: _Tally() for c in spec.columns}
        problems: dict[tuple[str, str], list[str]] = {}
        rows_after = 0
        for page in _pages(conn, spec):
            rows_after += len(page)
            for row in page:
                for column, value in zip(spec.columns, row[1:], strict=True):
                    key = (str(row[0]), column)
                    if value is not None and key in digests and digests[key] is None and unopened.still_left(
                            left, row[0], column, _token(value)):
                        tallies[column].left += 1
                        continue
                    why = _judge(tallies[column], key in digests, digests.get(key), value, old_key, new_key)
                    if why:
                        problems.setdefault((column, why), []).append(str(row[0]))
        findings = [Finding(spec.table, spec.pk, column, why, len(ids), tuple(ids[:limit]))
                    for (column, why), ids in sorted(problems.items())]
        for query, why in ((ROWS_UNKNOWN, "written after the digest snapshot, not re-encrypted by this rotation"),
                           (ROWS_CHANGED, "changed in columns other than the encrypted ones")):
            found = conn.execute(sql.SQL(query).format(pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table),
                                                     digest=other_columns_digest(spec, "x")),
                                 {"job": job_id, "limit": limit}).fetchone()
            if found and found[0]:
                findings.append(Finding(spec.table, spec.pk, None, why, int(found[0]),
                                        tuple(str(i) for i in found[1] or ())))
        counted = conn.execute("SELECT count(*) FROM rotation_runbook.row_digest WHERE job_id = %s",
                               (job_id,)).fetchone()
    conn.commit()
    before = {c: [d for (_, column), d in digests.items() if column == c] for c in spec.columns}
    columns = tuple(ColumnCheck(c, sum(d is not None for d in before[c]), sum(d is None for d in before[c]) - t.left,
                                t.nulls_kept, t.verified, t.old, t.left) for c, t in tallies.items())
    return PopulationCheck(spec.table, int(counted[0]) if counted else 0, rows_after, columns, tuple(findings))


def _judge(tally: _Tally, known: bool, digest: bytes | None, value: object, old_key: Secret,
           new_key: Secret) -> str | None:
    """Count one value; the reason it fails, or None. A row the snapshot does not know is reported as a row."""
    if not known:
        return "still under the old key" if value is not None and opens(old_key, _token(value)) else None
    if value is None:
        tally.nulls_kept += digest is None
        return None if digest is None else "value became NULL"
    token = _token(value)
    if opens(old_key, token):
        tally.old += 1
        return "still under the old key"
    try:
        plaintext = app_fernet(new_key).decrypt(token)
    except InvalidToken:
        return "under neither key"
    if digest is None:
        return "was NULL, now has a value"
    if not hmac.compare_digest(_digest(new_key, plaintext), bytes(digest)):
        return "plaintext changed"
    tally.verified += 1
    return None


def sample_opens(conn: psycopg.Connection, spec: TableSpec, key: Secret) -> dict[str, tuple[int, bool | None]]:
    """Per column: (non-NULL values, whether the key opens any of the first SAMPLE_SIZE of them; None for an empty
    column), as verify.sample_opens."""
    found: dict[str, tuple[int, bool | None]] = {}
    for column in spec.columns:
        ids = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table), "c": sql.Identifier(column)}
        count = conn.execute(sql.SQL("SELECT count({c}) FROM {t}").format(**ids)).fetchone()
        first = conn.execute(sql.SQL("SELECT {c} FROM {t} WHERE {c} IS NOT NULL ORDER BY {pk} LIMIT %s").format(
            **ids), (SAMPLE_SIZE,)).fetchall()
        found[column] = (int(count[0]) if count else 0,
                         None if not first else any(opens(key, _token(v)) for (v,) in first))
    conn.commit()
    return found


def reach(conn: psycopg.Connection, spec: TableSpec, new_key: Secret, old_key: Secret) -> tuple[int, int, int]:
    """(non-NULL values, how many open with new_key, how many with old_key) over the whole table."""
    total = with_new = with_old = 0
    for page in _pages(conn, spec):
        for value in (v for row in page for v in row[1:] if v is not None):
            total += 1
            with_new += opens(new_key, _token(value))
            with_old += opens(old_key, _token(value))
    conn.commit()
    return total, with_new, with_old
