"""Re-encrypt pgcrypto columns from an old key to a new one, inside PostgreSQL.

Plaintext never leaves the server. Keys reach it only through the session's key table (rotation.core.database: COPY
FROM STDIN, never a statement parameter or SQL text). Work is split into disjoint primary-key ranges, processed by
parallel workers in keyset batches; each batch is committed in one transaction together with its range's checkpoint,
so a SIGKILL at any moment loses at most the uncommitted batch and a rerun resumes exactly after the last committed
one: no value skipped, none encrypted twice. No trigger of the app fires (rotation.db_key.triggers).

One expensive pass: each old value is decrypted once. The statement that re-encrypts a page also writes its values'
keyed plaintext digests and its rows' other-columns digests (rotation_runbook.row_digest), in the same transaction
as the new ciphertext and the checkpoint; verification compares the new values' decryption with those digests.

After the ranged pass, values the ranges could not have seen are taken up: rows the pass wrote no digest for (written
behind its cursor), and, when a job is taken up again, every value that still opens with the old key (a writer that
was not stopped). Each is digested (plaintext and other columns) just before it is re-encrypted, so verification covers
it too.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from rotation.core.config import Config, StrengthPolicy
from rotation.core.database import NEW_KEY as NEW
from rotation.core.database import OLD_KEY as OLD
from rotation.core.database import apply_runbook_schema, connect, load_keys
from rotation.core.errors import RotationError
from rotation.core.keys import MIN_KEY_LENGTH, check_strength
from rotation.core.progress import Progress, ProgressCallback
from rotation.core.secret import Secret, fingerprint, secret
from rotation.db_key import unopened
from rotation.db_key.triggers import TriggerGuard, TriggerRefusal, guard_for

# A random 256-bit key gains nothing from S2K stretching (mode 3 iterates the hash ~65k-250k times to slow down
# guessing of low-entropy passphrases); stretching is ~97% of pgcrypto's per-value cost. pgp_sym_decrypt reads the
# settings stored in each value, so the app's decrypt_sensitive_data reads these values unchanged.
DEFAULT_CIPHER_OPTIONS = "cipher-algo=aes256, s2k-mode=1"


@dataclass(frozen=True)
class TableSpec:
    table: str
    pk: str
    columns: tuple[str, ...]
    others: tuple[str, ...] = ()  # the table's other columns, in table order: with_others() reads them from the catalog


# What a key must at least be when no policy is given: what the app itself accepts.
APP_MINIMUM = StrengthPolicy(min_length=MIN_KEY_LENGTH)


SAMPLE_SIZE = 16  # values tried per column to tell the right key from a wrong one (a stray under another is no proof)

def pgcrypto_specs(config: Config) -> tuple[TableSpec, ...]:
    """The encrypted-data inventory's pgcrypto columns, one spec per table (the Fernet values are not pgcrypto)."""
    return tuple(TableSpec(e.table, e.key, e.columns) for e in config.encrypted_data if e.kind == "pgcrypto")


class ReencryptionError(RotationError, RuntimeError):
    """A re-encryption cannot start or cannot go on. Names tables, columns and row ids; never a key."""


@dataclass(frozen=True)
class JobResult:
    job_id: int
    rows_total: int
    rows_done: int
    resumed: bool
    seconds: float
    stragglers: tuple[str, ...] = ()  # row ids taken up after the ranged pass (see the module's docstring)
    triggers: str = ""                # how the table's triggers were kept from firing
    workers: int = 1


def preflight(conn: psycopg.Connection, spec: TableSpec, old_key: Secret, new_key: Secret,
              policy: StrengthPolicy = APP_MINIMUM) -> None:
    """Everything that can be known to be wrong before a single value is written: raise with an actionable message.
    The connection's key table must hold old_key as 'old'."""
    check_strength(new_key, policy, name="the new database encryption key", current=old_key)
    found = {r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s",
        (spec.table,))}
    if not found:
        raise ReencryptionError(f"table {spec.table} does not exist in schema {current_schema(conn)}")
    missing = [c for c in (spec.pk, *spec.columns) if c not in found]
    if missing:
        raise ReencryptionError(f"table {spec.table} has no column {', '.join(missing)}")
    for column in spec.columns:
        if _sample_unreadable(conn, spec, column, old_key):
            raise ReencryptionError(
                f"the old key ({fingerprint(old_key)}) does not decrypt {spec.table}.{column}: nothing was written; "
                "check DB_ENCRYPTION_KEY in the newest .env backup")
    conn.commit()


def _sample_unreadable(conn: psycopg.Connection, spec: TableSpec, column: str, old_key: Secret) -> bool:
    """Does the old key open none of the first SAMPLE_SIZE non-NULL values of this column? Enough to catch a wrong
    key; a few values under a key nobody has among them are left to rotation.db_key.unopened (refused or left)."""
    load_keys(conn, {"old": old_key})
    row = conn.execute(sql.SQL(
        "SELECT NOT bool_or(rotation_runbook.try_decrypt(v, " + OLD + ") IS NOT NULL) FROM (SELECT {c} AS v "
        "FROM {t} WHERE {c} IS NOT NULL ORDER BY {pk} LIMIT " + str(SAMPLE_SIZE) + ") first"
    ).format(pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table), c=sql.Identifier(column))).fetchone()
    return bool(row and row[0])


def current_schema(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_schema()").fetchone()
    return row[0] if row else "?"


def running_job(conn: psycopg.Connection, spec: TableSpec) -> tuple[int, str, str] | None:
    """The unfinished job on this table, if any: (job_id, old_key_fp, new_key_fp)."""
    row = conn.execute(
        "SELECT job_id, old_key_fp, new_key_fp FROM rotation_runbook.reencrypt_job "
        "WHERE table_name = %s AND status = 'running'", (spec.table,)).fetchone()
    return (int(row[0]), str(row[1]), str(row[2])) if row else None


def find_job(conn: psycopg.Connection, spec: TableSpec, old_key: Secret, new_key: Secret) -> tuple[int, str] | None:
    """The newest job re-encrypting this table from old_key to new_key, if any: (job_id, status)."""
    row = conn.execute(
        "SELECT job_id, status FROM rotation_runbook.reencrypt_job WHERE table_name = %s AND old_key_fp = %s "
        "AND new_key_fp = %s AND status <> 'abandoned' ORDER BY job_id DESC LIMIT 1",
        (spec.table, fingerprint(old_key), fingerprint(new_key))).fetchone()
    conn.commit()
    return (int(row[0]), str(row[1])) if row else None


@dataclass(frozen=True)
class JobSummary:
    job_id: int
    table: str
    status: str
    rows_done: int
    total_rows: int


def jobs_towards(conn: psycopg.Connection, new_key_fp: str) -> list[JobSummary]:
    """Every re-encryption job (not abandoned) whose target is the key with this fingerprint."""
    apply_runbook_schema(conn)
    rows = conn.execute(
        "SELECT j.job_id, j.table_name, j.status, COALESCE(sum(r.rows_done), 0), j.total_rows "
        "FROM rotation_runbook.reencrypt_job j LEFT JOIN rotation_runbook.reencrypt_range r USING (job_id) "
        "WHERE j.new_key_fp = %s AND j.status <> 'abandoned' GROUP BY j.job_id ORDER BY j.job_id",
        (new_key_fp,)).fetchall()
    conn.commit()
    return [JobSummary(int(a), str(b), str(c), int(d), int(e)) for a, b, c, d, e in rows]


def abandon_job(conn: psycopg.Connection, job_id: int) -> None:
    """Mark a job that never wrote a value as abandoned, so a rotation to another key may start on its table."""
    conn.execute("UPDATE rotation_runbook.reencrypt_job SET status = 'abandoned', finished_at = now() "
                 "WHERE job_id = %s AND status = 'running'", (job_id,))
    conn.commit()


def start_or_resume_job(conn: psycopg.Connection, spec: TableSpec, old_key: Secret | str, new_key: Secret | str, *,
                        ranges: int, cipher_options: str = DEFAULT_CIPHER_OPTIONS,
                        policy: StrengthPolicy = APP_MINIMUM, kind: str = "pgcrypto") -> tuple[int, bool]:
    """Return (job_id, resumed). A running job for other keys is refused: finishing it is the operator's call."""
    old_key, new_key = secret(old_key), secret(new_key)
    apply_runbook_schema(conn)
    fps = (fingerprint(old_key), fingerprint(new_key))
    existing = running_job(conn, spec)
    if existing and existing[1:] != fps:
        raise ReencryptionError(
            f"an unfinished re-encryption of {spec.table} (job {existing[0]}) is from key {existing[1]} to "
            f"{existing[2]}, not {fps[0]} to {fps[1]}: resume it with those keys first")
    same = find_job(conn, spec, old_key, new_key)
    if same:  # resuming, or re-running a finished job: its checkpoints say what is left (possibly nothing)
        return same[0], True
    if kind == "pgcrypto":
        preflight(conn, spec, old_key, new_key, policy)
    else:  # the Fernet module checks its own values (rotation.db_key.fernet)
        check_strength(new_key, policy, name="the new database encryption key", current=old_key)
    with conn.transaction():
        total = _one(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(spec.table))))
        job_id = _one(conn.execute(
            "INSERT INTO rotation_runbook.reencrypt_job (table_name, pk_column, columns, old_key_fp, new_key_fp, "
            "cipher_options, total_rows, kind) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING job_id",
            (spec.table, spec.pk, list(spec.columns), fingerprint(old_key), fingerprint(new_key), cipher_options,
             total, kind)))
        bounds = _range_bounds(conn, spec, ranges)
        conn.cursor().executemany(
            "INSERT INTO rotation_runbook.reencrypt_range (job_id, range_no, lo_excl, hi_incl) VALUES (%s, %s, %s, %s)",
            [(job_id, i, lo, hi) for i, (lo, hi) in enumerate(bounds)])
    return job_id, False


def _one(cursor: psycopg.Cursor[Any]) -> Any:
    """The single value a single-row statement returns."""
    row = cursor.fetchone()
    if row is None:
        raise ReencryptionError("the database returned no row where one was expected")
    return row[0]


def _range_bounds(conn: psycopg.Connection, spec: TableSpec, ranges: int) -> list[tuple[str | None, str | None]]:
    """Split the key space into up to `ranges` disjoint (lo, hi] slices of about equal row counts."""
    if ranges <= 1:
        return [(None, None)]
    # array_agg, not max(): not every key type has max() (uuid before PostgreSQL 16)
    his = [r[0] for r in conn.execute(sql.SQL(
        "SELECT ((array_agg(k ORDER BY k DESC))[1])::text FROM (SELECT {pk} AS k, ntile(%s) OVER (ORDER BY {pk}) "
        "AS b FROM {t}) s GROUP BY b ORDER BY b").format(pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table)),
        (ranges,))]
    if not his:
        return [(None, None)]
    los: list[str | None] = [None, *his[:-1]]
    his_open: list[str | None] = [*his[:-1], None]  # the last range is open-ended: rows added later still belong
    return list(zip(los, his_open, strict=True))


def pk_type(conn: psycopg.Connection, spec: TableSpec) -> str:
    """The primary key's SQL type, so keyset comparisons happen in its own ordering, not as text."""
    row = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                       "WHERE attrelid = to_regclass(%s) AND attname = %s", (spec.table, spec.pk)).fetchone()
    if not row:
        raise ReencryptionError(f"table {spec.table} has no column {spec.pk}")
    return str(row[0])


def old_plaintext(spec: TableSpec, column: str, left: str | None, alias: str = "t") -> sql.Composed:
    """A value decrypted with the old key; NULL for a value recorded as left (no key opens it) by the rotation whose
    new key has fingerprint `left`, which the statement then keeps as it is. Without any left, the plain call."""
    plain = sql.SQL("pgp_sym_decrypt({a}.{c}, " + OLD + ")").format(a=sql.Identifier(alias), c=sql.Identifier(column))
    if left is None:
        return plain
    return sql.SQL("CASE WHEN {left} THEN NULL ELSE {plain} END").format(
        left=unopened.is_left(spec, column, left, alias), plain=plain)


def _batch_statement(spec: TableSpec, key_type: str, *, lower: bool, upper: bool,
                     digests: bool = True, left: str | None = None) -> sql.Composed:
    """Re-encrypt the next keyset page of a range: plain index range bounds (no OR), so each page costs the same
    wherever it lies in the table. Keys come from the session's key table.

    With `digests`, one statement decrypts each old value once: the page (locked) yields its plaintexts, the UPDATE
    encrypts them under the new key, and the same statement writes each value's keyed plaintext digest and the row's
    other-columns digest, taken from the row as it was before the write. Digests and new ciphertext therefore commit
    together (with the range's checkpoint): a kill leaves both or neither."""
    ids = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table), "kt": sql.SQL(key_type)}
    bounds = [sql.SQL("t.{pk} > CAST(%(after)s AS {kt})").format(**ids)] if lower else []
    bounds += [sql.SQL("t.{pk} <= CAST(%(hi)s AS {kt})").format(**ids)] if upper else []
    where = sql.SQL(" AND ").join(bounds) if bounds else sql.SQL("true")
    if not digests:
        sets = sql.SQL(", ").join(
            sql.SQL("{c} = CASE WHEN t.{c} IS NULL THEN NULL ELSE "
                    "pgp_sym_encrypt(pgp_sym_decrypt(t.{c}, " + OLD + "), " + NEW + ", %(opts)s) END"
                    ).format(c=sql.Identifier(c))
            for c in spec.columns)
        return sql.SQL("""
WITH page AS (
    SELECT t.{pk} FROM {t} t WHERE {where} ORDER BY t.{pk} LIMIT %(n)s
), upd AS (
    UPDATE {t} t SET {sets}
    WHERE {where} AND t.{pk} <= (SELECT max({pk}) FROM page)
    RETURNING t.{pk} AS k
)
SELECT count(*), max(k)::text FROM upd
""").format(where=where, sets=sets, **ids)
    plain = sql.SQL(", ").join(
        sql.SQL("{d} AS {p}").format(d=old_plaintext(spec, c, left), p=sql.Identifier(f"p{i}"))
        for i, c in enumerate(spec.columns))
    # pgp_sym_decrypt and pgp_sym_encrypt are strict: a NULL stays NULL, and so does its digest; a value left as
    # found (no key opens it) has no plaintext here, and keeps its bytes
    sets = sql.SQL(", ").join(
        (sql.SQL("{c} = pgp_sym_encrypt(p.{p}, " + NEW + ", %(opts)s)") if left is None else
         sql.SQL("{c} = COALESCE(pgp_sym_encrypt(p.{p}, " + NEW + ", %(opts)s), t.{c})")).format(
            c=sql.Identifier(c), p=sql.Identifier(f"p{i}"))
        for i, c in enumerate(spec.columns))
    return sql.SQL("""
WITH page AS (
    SELECT t.{pk} AS k, {other} AS other, {plain}
    FROM {t} t WHERE {where} ORDER BY t.{pk} LIMIT %(n)s FOR UPDATE
), upd AS (
    UPDATE {t} t SET {sets} FROM page p WHERE t.{pk} = p.k
    RETURNING t.{pk} AS k
), digests AS (
    INSERT INTO rotation_runbook.row_digest (job_id, pk, other, digests)
    SELECT %(job)s, p.k::text, p.other, {digests} FROM page p
    ON CONFLICT (job_id, pk) DO NOTHING
)
SELECT count(*), max(k)::text FROM upd
""").format(where=where, sets=sets, plain=plain, other=other_columns_digest(spec, "t"),
            digests=digest_array(sql.SQL("p.{}").format(sql.Identifier(f"p{i}")) for i in range(len(spec.columns))),
            **ids)


def digest_array(plaintexts: Iterable[sql.Composable]) -> sql.Composed:
    """A row's value digests for row_digest.digests, one per plaintext in the spec's column order: keyed with the new
    key, so they reveal nothing to whoever lacks it (hmac is strict: a NULL value's digest is NULL)."""
    return sql.SQL("ARRAY[{}]::bytea[]").format(sql.SQL(", ").join(
        sql.SQL("hmac({}, " + NEW + ", 'sha256')").format(p) for p in plaintexts))


PAGE_TABLE = "pg_temp.rotation_page"


def page_table_ddl(spec: TableSpec) -> sql.Composed:
    """The session's page table: a page's new ciphertexts and digests between its two statements (never a
    plaintext); emptied at each commit."""
    cols = sql.SQL(", ").join(sql.SQL("{} bytea, {} bytea").format(sql.Identifier(f"n{i}"), sql.Identifier(f"d{i}"))
                              for i in range(len(spec.columns)))
    return sql.SQL("CREATE TEMP TABLE IF NOT EXISTS rotation_page (k text PRIMARY KEY, other bytea, {}) "
                   "ON COMMIT DELETE ROWS").format(cols)


def _prepare_statement(spec: TableSpec, key_type: str, *, lower: bool, upper: bool,
                       left: str | None = None) -> sql.Composed:
    """The owner way, first half of a page: lock the page's rows, decrypt each old value once, and keep its new
    ciphertext, its keyed plaintext digest and the row's other-columns digest in the session's page table."""
    ids = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table), "kt": sql.SQL(key_type)}
    bounds = [sql.SQL("t.{pk} > CAST(%(after)s AS {kt})").format(**ids)] if lower else []
    bounds += [sql.SQL("t.{pk} <= CAST(%(hi)s AS {kt})").format(**ids)] if upper else []
    where = sql.SQL(" AND ").join(bounds) if bounds else sql.SQL("true")
    n = range(len(spec.columns))
    plain = sql.SQL(", ").join(
        sql.SQL("{d} AS {p}").format(d=old_plaintext(spec, c, left), p=sql.Identifier(f"p{i}"))
        for i, c in enumerate(spec.columns))
    cols = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Identifier(f"n{i}"), sql.Identifier(f"d{i}")) for i in n)
    values = sql.SQL(", ").join(
        sql.SQL("pgp_sym_encrypt(p.{p}, " + NEW + ", %(opts)s), hmac(p.{p}, " + NEW + ", 'sha256')").format(
            p=sql.Identifier(f"p{i}")) for i in n)
    return sql.SQL("""
WITH page AS (
    SELECT t.{pk} AS k, {other} AS other, {plain}
    FROM {t} t WHERE {where} ORDER BY t.{pk} LIMIT %(n)s FOR UPDATE
), kept AS (
    INSERT INTO """ + PAGE_TABLE + """ (k, other, {cols}) SELECT p.k::text, p.other, {values} FROM page p
)
SELECT count(*), max(k)::text FROM page
""").format(where=where, plain=plain, cols=cols, values=values, other=other_columns_digest(spec, "t"), **ids)


def _apply_statement(spec: TableSpec, key_type: str) -> sql.Composed:
    """The owner way, second half of a page (under the table lock): the new ciphertexts in, the digests recorded."""
    ids = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table), "kt": sql.SQL(key_type)}
    # COALESCE: a value left as found (no key opens it) has no new ciphertext and keeps its bytes
    sets = sql.SQL(", ").join(sql.SQL("{c} = COALESCE(p.{n}, t.{c})").format(c=sql.Identifier(c),
                                                                           n=sql.Identifier(f"n{i}"))
                              for i, c in enumerate(spec.columns))
    digests = sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(f"d{i}")) for i in range(len(spec.columns)))
    return sql.SQL("""
WITH upd AS (
    UPDATE {t} t SET {sets} FROM """ + PAGE_TABLE + """ p WHERE t.{pk} = CAST(p.k AS {kt})
    RETURNING t.{pk} AS k
), digests AS (
    INSERT INTO rotation_runbook.row_digest (job_id, pk, other, digests)
    SELECT %(job)s, p.k, p.other, ARRAY[{digests}]::bytea[] FROM """ + PAGE_TABLE + """ p
    ON CONFLICT (job_id, pk) DO NOTHING
)
SELECT count(*) FROM upd
""").format(sets=sets, digests=digests, **ids)


@dataclass(frozen=True)
class _Job:
    job_id: int
    total: int
    done_before: int
    cipher_options: str
    todo: tuple[int, ...]
    snapshot_taken: bool
    resumed: bool
    digests_removed: bool  # a finished rotation checked again: no snapshot left to anchor stragglers to


def _open_job(conn: psycopg.Connection, spec: TableSpec, old_key: Secret, new_key: Secret, *, ranges: int,
              cipher_options: str, policy: StrengthPolicy) -> _Job:
    job_id, resumed = start_or_resume_job(conn, spec, old_key, new_key, ranges=ranges,
                                          cipher_options=cipher_options, policy=policy)
    row = conn.execute(
        "SELECT j.total_rows, COALESCE(sum(r.rows_done), 0), j.cipher_options, j.snapshot_taken, "
        "j.digests_removed_at IS NOT NULL "
        "FROM rotation_runbook.reencrypt_job j JOIN rotation_runbook.reencrypt_range r USING (job_id) "
        "WHERE job_id = %s GROUP BY j.job_id", (job_id,)).fetchone()
    if row is None:
        raise ReencryptionError(f"re-encryption job {job_id} of {spec.table} has no ranges")
    todo = tuple(r[0] for r in conn.execute(
        "SELECT range_no FROM rotation_runbook.reencrypt_range WHERE job_id = %s AND NOT done ORDER BY range_no",
        (job_id,)))
    conn.commit()
    return _Job(job_id, int(row[0]), int(row[1]), str(row[2]), todo, bool(row[3]), resumed, bool(row[4]))


def job_guard(conn: psycopg.Connection, spec: TableSpec, job_id: int) -> TriggerGuard:
    """How this job keeps the table's triggers quiet (refused with the grant it needs), recorded on the job."""
    try:
        guard = guard_for(conn, spec.table)
    except TriggerRefusal as exc:
        raise ReencryptionError(str(exc)) from None
    conn.execute("UPDATE rotation_runbook.reencrypt_job SET triggers = %s WHERE job_id = %s", (guard.mode, job_id))
    conn.commit()
    return guard


def reencrypt(dsn: str, old_key: Secret | str, new_key: Secret | str, *, spec: TableSpec,
              workers: int | None = None, batch_size: int = 2000, cipher_options: str = DEFAULT_CIPHER_OPTIONS,
              policy: StrengthPolicy = APP_MINIMUM, on_progress: ProgressCallback | None = None,
              progress_every_s: float = 0.5, digests: bool = True) -> JobResult:
    """Re-encrypt all of spec's columns from old_key to new_key, resuming an interrupted job on the same keys.

    With `digests` (what a rotation needs), each page also records its values' plaintext digests and its rows'
    other-columns digests in the same statement (see _batch_statement), and rows the pass could not have seen are
    taken up after it. Without, the pass re-encrypts only (the bare engine, as benchmarked)."""
    old_key, new_key = secret(old_key), secret(new_key)
    keys = {"old": old_key, "new": new_key}
    workers = workers or os.cpu_count() or 2
    started = time.monotonic()
    with connect(dsn, keys=keys) as conn:
        job = _open_job(conn, spec, old_key, new_key, ranges=workers * 4, cipher_options=cipher_options,
                        policy=policy)
        guard = job_guard(conn, spec, job.job_id)
        key_type = pk_type(conn, spec)
        spec = with_others(conn, spec)
        left = unopened.left_fp(conn, new_key, spec)
        if digests and not job.snapshot_taken:  # the pass writes the digests: rows it has not seen are stragglers
            conn.execute("UPDATE rotation_runbook.reencrypt_job SET snapshot_taken = true WHERE job_id = %s",
                         (job.job_id,))
            job = dataclasses.replace(job, snapshot_taken=True)
        conn.commit()
    split = guard.serial and digests  # the owner way locks the table: only the cheap write is taken under it
    workers = 1 if guard.serial and not split else workers
    counter = _Counter(job.done_before)
    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    for r in job.todo:
        work.put(r)
    params = {"job": job.job_id, "opts": job.cipher_options, "n": batch_size}
    statements = {(lo, hi): (_prepare_statement(spec, key_type, lower=lo, upper=hi, left=left) if split else
                             _batch_statement(spec, key_type, lower=lo, upper=hi, digests=digests, left=left))
                  for lo in (False, True) for hi in (False, True)}
    apply = _apply_statement(spec, key_type) if split else None

    cancelled = threading.Event()  # the run was interrupted: each worker stops after the page it is on commits

    def worker() -> None:
        with connect(dsn, keys=keys) as conn:
            while not cancelled.is_set():
                try:
                    range_no = work.get_nowait()
                except queue.Empty:
                    return
                _drain_range(conn, statements, {**params, "range": range_no}, counter, spec, guard, apply,
                             cancelled)

    stop = threading.Event()
    reporter = threading.Thread(target=_report, daemon=True,
                                args=(counter, job, started, on_progress, progress_every_s, stop))
    reporter.start()
    try:
        threads = max(1, min(workers, len(job.todo) or 1))
        with ThreadPoolExecutor(max_workers=threads) as pool:
            try:
                for f in [pool.submit(worker) for _ in range(threads)]:
                    f.result()
            except BaseException:  # Ctrl-C, SIGTERM, a worker's error: no new range after the current pages
                cancelled.set()
                raise
    finally:
        stop.set()
        reporter.join()
    with connect(dsn, keys=keys) as conn:
        stragglers = (_take_up_stragglers(conn, spec, job, guard, key_type, full=job.resumed, left=left)
                      if job.snapshot_taken and not job.digests_removed else ())
        conn.execute("UPDATE rotation_runbook.reencrypt_job SET status = 'done', finished_at = now() "
                     "WHERE job_id = %s AND status = 'running'", (job.job_id,))
        conn.commit()
    elapsed = time.monotonic() - started
    if on_progress:
        on_progress(Progress(counter.value, max(job.total, counter.value), elapsed, final=True,
                             since=job.done_before))
    return JobResult(job.job_id, job.total, counter.value - job.done_before, job.resumed, elapsed, stragglers,
                     guard.describe(), workers)


CLAIM = """
SELECT COALESCE(cursor, lo_excl), hi_incl FROM rotation_runbook.reencrypt_range
WHERE job_id = %(job)s AND range_no = %(range)s AND NOT done FOR UPDATE
"""
CHECKPOINT = """
UPDATE rotation_runbook.reencrypt_range
SET cursor = COALESCE(%(cursor)s, cursor), rows_done = rows_done + %(count)s, done = %(done)s
WHERE job_id = %(job)s AND range_no = %(range)s
"""


def _drain_range(conn: psycopg.Connection, statements: dict[tuple[bool, bool], sql.Composed],
                 params: dict[str, object], counter: _Counter, spec: TableSpec, guard: TriggerGuard,
                 apply: sql.Composed | None = None, cancelled: threading.Event | None = None) -> None:
    """Batches until the range is done. Each transaction locks the range's checkpoint row (so two runs never work one
    range at once), keeps the table's triggers quiet, re-encrypts one page and advances the checkpoint: all of it
    commits, or none. With `apply` (the owner way), the page's expensive part (decrypt, encrypt, digests) runs
    before the table lock is taken, into the session's page table, so workers overlap; `apply` then writes it."""
    split = apply is not None
    if split:
        conn.execute(page_table_ddl(spec))
        conn.commit()
    while True:
        try:
            with conn.transaction():
                for setting in DIGEST_SETTINGS:  # the other-columns digests' JSON text must not depend on the session
                    conn.execute(setting)
                claimed = conn.execute(CLAIM, params).fetchone()
                if claimed is None:  # finished, by this run or an earlier one
                    return
                after, hi = claimed
                statement = statements[(after is not None, hi is not None)]
                if not split:
                    guard.begin(conn)
                page = conn.execute(statement, {**params, "after": after, "hi": hi}).fetchone()
                count, last = page if page else (0, None)
                if split and apply is not None:  # only the cheap write holds the table lock the owner way takes
                    guard.begin(conn)
                    conn.execute(apply, params)
                done = count < int(str(params["n"]))
                conn.execute(CHECKPOINT, {**params, "cursor": last, "count": count, "done": done})
                guard.end(conn)
        except psycopg.errors.ExternalRoutineInvocationException as exc:  # pgcrypto: "Wrong key or corrupt data"
            raise ReencryptionError(_describe_unreadable(conn, spec, params)) from _without_params(exc)
        except psycopg.Error as exc:
            raise ReencryptionError(_describe_failed_batch(conn, spec, params, exc, guard)) from _without_params(exc)
        counter.add(count)
        if done or (cancelled is not None and cancelled.is_set()):
            return


def _range_bounds_of(conn: psycopg.Connection, params: dict[str, object]) -> tuple[str | None, str | None]:
    row = conn.execute("SELECT COALESCE(cursor, lo_excl), hi_incl FROM rotation_runbook.reencrypt_range "
                       "WHERE job_id = %(job)s AND range_no = %(range)s", params).fetchone()
    return (row[0], row[1]) if row else (None, None)


def _describe_unreadable(conn: psycopg.Connection, spec: TableSpec, params: dict[str, object]) -> str:
    """Name the rows and columns the old key cannot open in the failed range (from its checkpoint on; values under
    neither key first): the operator's next step depends on it. Ranges already done hold new-key values legitimately."""
    bounds = _range_bounds_of(conn, params)
    bad: list[str] = []
    for column in spec.columns:
        rows = conn.execute(sql.SQL(
            "SELECT x.{pk}::text, rotation_runbook.try_decrypt(x.{c}, " + NEW + ") IS NOT NULL AS new_ok FROM {t} x "
            "WHERE x.{c} IS NOT NULL AND rotation_runbook.try_decrypt(x.{c}, " + OLD + ") IS NULL "
            "AND (%(after)s::text IS NULL OR x.{pk} > CAST(%(after)s::text AS {kt})) "
            "AND (%(hi)s::text IS NULL OR x.{pk} <= CAST(%(hi)s::text AS {kt})) "
            "ORDER BY new_ok, x.{pk} LIMIT 5"
        ).format(pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table), c=sql.Identifier(column),
                 kt=sql.SQL(pk_type(conn, spec))),
            {"after": bounds[0], "hi": bounds[1]}).fetchall()
        bad += [f"{spec.pk}={pk} {column} ({'already under the new key' if new_ok else 'under neither key'})"
                for pk, new_ok in rows]
    conn.rollback()
    bad.sort(key=lambda line: not line.endswith("(under neither key)"))
    return (f"re-encryption of {spec.table} stopped: the old key cannot decrypt " + "; ".join(bad[:10])
            + ". Nothing of the failed batch was written; the job resumes after the last committed batch.")


def _describe_failed_batch(conn: psycopg.Connection, spec: TableSpec, params: dict[str, object],
                           exc: psycopg.Error, guard: TriggerGuard) -> str:
    """A database error other than pgcrypto's: name the table, the column and the row, found by re-running the failed
    batch value by value (each attempt rolled back)."""
    what = f"{exc.sqlstate or type(exc).__name__}: {exc.diag.message_primary or type(exc).__name__}"
    where = "in the failed batch"
    try:
        conn.rollback()
        failing = _failing_value(conn, spec, params, guard)
        if failing is not None:
            where = f"at {spec.table}.{failing[1]} {spec.pk}={failing[0]}"
    except psycopg.Error:  # the connection itself is gone: the error above is all there is to say
        pass
    return (f"re-encryption of {spec.table} stopped {where}: {what}. Nothing of the failed batch was written; the "
            "job resumes after the last committed batch.")


def _failing_value(conn: psycopg.Connection, spec: TableSpec, params: dict[str, object],
                   guard: TriggerGuard) -> tuple[str, str] | None:
    """The first (row id, column) of the failed batch whose re-encryption fails on its own."""
    after, hi = _range_bounds_of(conn, params)
    kt = sql.SQL(pk_type(conn, spec))
    ids = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table), "kt": kt}
    rows = [str(r[0]) for r in conn.execute(sql.SQL(
        "SELECT {pk}::text FROM {t} WHERE (%(after)s::text IS NULL OR {pk} > CAST(%(after)s::text AS {kt})) "
        "AND (%(hi)s::text IS NULL OR {pk} <= CAST(%(hi)s::text AS {kt})) ORDER BY {pk} LIMIT %(n)s").format(**ids),
        {"after": after, "hi": hi, "n": params["n"]})]
    conn.rollback()
    for row in rows:
        for column in spec.columns:
            try:
                with conn.transaction(force_rollback=True):
                    guard.begin(conn)
                    conn.execute(sql.SQL(
                        "UPDATE {t} SET {c} = pgp_sym_encrypt(pgp_sym_decrypt({c}, " + OLD + "), " + NEW + ", "
                        "%(opts)s) WHERE {pk} = CAST(%(row)s AS {kt}) AND {c} IS NOT NULL").format(
                            c=sql.Identifier(column), **ids), {"opts": params["opts"], "row": row})
            except psycopg.Error:
                return row, column
    return None


def _without_params(exc: Exception) -> Exception:
    """pgcrypto's error text carries no parameters, but keep only its first line to be sure nothing else rides along."""
    return ReencryptionError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


# --- values the ranged pass could not have seen -----------------------------------------------------------------------

def _opens_with_old(spec: TableSpec) -> sql.Composable:
    return sql.SQL(" OR ").join(
        sql.SQL("rotation_runbook.try_decrypt(t.{c}, " + OLD + ") IS NOT NULL").format(c=sql.Identifier(c))
        for c in spec.columns)


def straggler_query(spec: TableSpec, *, full: bool) -> sql.Composed:
    """Row ids to take up: rows the digest snapshot does not know; with `full`, also every row with a value that still
    opens with the old key."""
    ids = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table)}
    unknown = sql.SQL("SELECT t.{pk}::text FROM {t} t WHERE NOT EXISTS (SELECT 1 FROM "
                      "rotation_runbook.row_digest d WHERE d.job_id = %(job)s AND d.pk = t.{pk}::text)").format(**ids)
    if not full:
        return unknown
    return sql.SQL("{} UNION SELECT t.{pk}::text FROM {t} t WHERE {opens}").format(
        unknown, opens=_opens_with_old(spec), **ids)


def _take_up_stragglers(conn: psycopg.Connection, spec: TableSpec, job: _Job, guard: TriggerGuard, key_type: str,
                        *, full: bool, batch: int = 500, left: str | None = None) -> tuple[str, ...]:
    rows = tuple(sorted(str(r[0]) for r in conn.execute(straggler_query(spec, full=full), {"job": job.job_id})))
    conn.commit()
    for start in range(0, len(rows), batch):
        chunk = list(rows[start:start + batch])
        try:
            with conn.transaction():
                guard.begin(conn)
                _require_readable(conn, spec, chunk, key_type, left)
                _digest_rows(conn, spec, job.job_id, chunk, key_type)
                conn.execute(_straggler_update(spec, key_type), {"ids": chunk, "opts": job.cipher_options})
                guard.end(conn)
        except psycopg.Error as exc:
            raise ReencryptionError(
                f"re-encryption of {spec.table} ({', '.join(spec.columns)}) stopped while taking up the rows written "
                f"during the rotation ({spec.pk}={', '.join(chunk[:5])}{', ...' if len(chunk) > 5 else ''}): "
                f"{exc.sqlstate}: {exc.diag.message_primary}. Nothing of that batch was written.") from None
    return rows


def _ids_match(spec: TableSpec, key_type: str) -> sql.Composed:
    return sql.SQL("t.{pk} = ANY(CAST(%(ids)s AS {kt}[]))").format(pk=sql.Identifier(spec.pk),
                                                                     kt=sql.SQL(key_type))


def unreadable_in(conn: psycopg.Connection, spec: TableSpec, ids: list[str], key_type: str,
                  left: str | None = None) -> list[str]:
    """`table.column pk=id (under neither key)` for each value of these rows that opens with neither key and was not
    recorded as left (unchanged) before the app stopped: each names its own row and column."""
    bad: list[str] = []
    for column in spec.columns:
        kept = (sql.SQL(" AND NOT {}").format(unopened.is_left(spec, column, left)) if left is not None
                else sql.SQL(""))
        found = conn.execute(sql.SQL(
            "SELECT t.{pk}::text FROM {t} t WHERE {match} AND t.{c} IS NOT NULL "
            "AND rotation_runbook.try_decrypt(t.{c}, " + OLD + ") IS NULL "
            "AND rotation_runbook.try_decrypt(t.{c}, " + NEW + ") IS NULL{kept} ORDER BY t.{pk} LIMIT 20").format(
                pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table), c=sql.Identifier(column),
                match=_ids_match(spec, key_type), kept=kept), {"ids": ids}).fetchall()
        bad += [f"{spec.table}.{column} {spec.pk}={r[0]} (under neither key)" for r in found]
    return bad


def _require_readable(conn: psycopg.Connection, spec: TableSpec, ids: list[str], key_type: str,
                      left: str | None = None) -> None:
    """Every value of these rows opens with the old or the new key (or was left as found, unchanged); otherwise name
    the ones that open with neither."""
    bad = unreadable_in(conn, spec, ids, key_type, left)
    if bad:
        raise ReencryptionError(f"re-encryption of {spec.table} stopped: values written during the rotation open with "
                                f"neither key: {'; '.join(bad)}. Nothing of that batch was written; the next run "
                                "finds them before the app stops (leave them as they are with --leave-unreadable)")


def with_others(conn: psycopg.Connection, spec: TableSpec) -> TableSpec:
    """The spec with its table's columns other than the encrypted ones, in table order, as the catalog has them."""
    if spec.others:
        return spec
    names = [str(r[0]) for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum", (spec.table,))]
    if not names:
        raise ReencryptionError(f"table {spec.table} does not exist in schema {current_schema(conn)}")
    return dataclasses.replace(spec, others=tuple(n for n in names if n not in spec.columns))


def other_columns_digest(spec: TableSpec, alias: str = "x") -> sql.Composed:
    """SHA-256 of the text of a row's columns other than the encrypted ones (session settings fixed by the caller:
    DIGEST_SETTINGS). The row's text, not its JSON: a third of the cost, and it is paid while the app is down."""
    if not spec.others:
        raise ReencryptionError(f"the other columns of {spec.table} were not read from the catalog (with_others)")
    return sql.SQL("sha256(convert_to(ROW({cols})::text, 'UTF8'))").format(cols=sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in spec.others))


# Fixed so that the text of a row (dates, timestamps, intervals, floats, bytea) is the same whenever it is digested.
DIGEST_SETTINGS = ("SET LOCAL TimeZone = 'UTC'", "SET LOCAL IntervalStyle = 'postgres'",
                   "SET LOCAL extra_float_digits = 1", "SET LOCAL DateStyle = 'ISO, YMD'",
                   "SET LOCAL bytea_output = 'hex'")


def _digest_rows(conn: psycopg.Connection, spec: TableSpec, job_id: int, ids: list[str], key_type: str) -> None:
    """Digests of these rows as they are now (each value under whichever key opens it), replacing earlier ones."""
    spec = with_others(conn, spec)
    for setting in DIGEST_SETTINGS:
        conn.execute(setting)
    values = digest_array(
        sql.SQL("COALESCE(rotation_runbook.try_decrypt(t.{c}, " + OLD + "), rotation_runbook.try_decrypt(t.{c}, "
                + NEW + "))").format(c=sql.Identifier(c)) for c in spec.columns)
    conn.execute(sql.SQL(
        "INSERT INTO rotation_runbook.row_digest (job_id, pk, other, digests) "
        "SELECT %(job)s, t.{pk}::text, {other}, {values} FROM {t} t WHERE {match} "
        "ON CONFLICT (job_id, pk) DO UPDATE SET other = EXCLUDED.other, digests = EXCLUDED.digests").format(
            pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table), other=other_columns_digest(spec, "t"),
            values=values, match=_ids_match(spec, key_type)), {"job": job_id, "ids": ids})


def _straggler_update(spec: TableSpec, key_type: str) -> sql.Composed:
    sets = sql.SQL(", ").join(
        sql.SQL("{c} = CASE WHEN rotation_runbook.try_decrypt(t.{c}, " + OLD + ") IS NOT NULL THEN "
                "pgp_sym_encrypt(pgp_sym_decrypt(t.{c}, " + OLD + "), " + NEW + ", %(opts)s) ELSE t.{c} END"
                ).format(c=sql.Identifier(c))
        for c in spec.columns)
    return sql.SQL("UPDATE {t} t SET {sets} WHERE {match} AND ({opens})").format(
        t=sql.Identifier(spec.table), sets=sets, match=_ids_match(spec, key_type), opens=_opens_with_old(spec))


class _Counter:
    def __init__(self, start: int) -> None:
        self._lock = threading.Lock()
        self.value = start

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n


def _report(counter: _Counter, job: _Job, started: float, on_progress: ProgressCallback | None, every: float,
            stop: threading.Event) -> None:
    while on_progress and not stop.wait(every):
        on_progress(Progress(counter.value, max(job.total, counter.value), time.monotonic() - started,
                             since=job.done_before))
