"""The staged DB key rotation: the expensive work while the app still runs, a short cutover while it is stopped.

    staging   (app running; rotation state `create`, the new key already kept in the PENDING file) every row's values
              are decrypted under the old key once and their new ciphertext is written to a side table,
              rotation_runbook.staged_<id>, keyed by primary key, with the row version it was staged from (its ctid
              and xmin: PostgreSQL writes a new row version for every UPDATE, so an unchanged pair is an unchanged
              row), a digest of the row's ciphertexts (`src`) and of its other columns (`other`), each value's keyed
              plaintext digest (HMAC-SHA-256 under the new key) and `verified`: the new ciphertext decrypted with the
              new key gives that digest. Nothing of the app's table is written or locked (plain SELECTs). Pages are
              throttled (`max_rate` rows/s); each commits with its cursor, so a kill loses at most one page and a
              rerun goes on after it.
    cutover   (app stopped, .env holding the new key; state `set`)
              1. stragglers: rows inserted since staging, and rows whose ciphertext changed since it, are staged again
                 now, flagged `at_cutover`; rows changed only in other columns get their new version and digest;
                 staged rows whose row is gone are dropped. Only rows whose version changed are read beyond their
                 version: the work grows with what the app wrote, not with the table;
              2. swap: one UPDATE, in one transaction with the job's checkpoint, sets each value to its verified staged
                 ciphertext where the row is still the version staged from; no trigger fires
                 (rotation.db_key.triggers). A kill leaves every row as it was; the rerun swaps again;
              3. proof: every row of the table holds exactly its verified staged ciphertexts (a population: rows
                 equal / rows in the table), counting those staged at cutover.
    after     the usual verification (verify_staged: every value its verified staged ciphertext, every row's other
              columns as staged, in one pass) and, once the app is back, the completeness sweep; the side table is
              dropped when the rotation finishes or is abandoned.

Keys reach the server only through the session's key table (COPY FROM STDIN), never in SQL text or parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from rotation.core.database import NEW_KEY as NEW
from rotation.core.database import OLD_KEY as OLD
from rotation.core.database import apply_runbook_schema, connect, load_keys
from rotation.core.progress import Progress, ProgressCallback
from rotation.core.secret import Secret, fingerprint
from rotation.db_key import unopened
from rotation.db_key.reencrypt import (
    DEFAULT_CIPHER_OPTIONS,
    DIGEST_SETTINGS,
    ReencryptionError,
    TableSpec,
    old_plaintext,
    other_columns_digest,
    pk_type,
    start_or_resume_job,
    unreadable_in,
    with_others,
)
from rotation.db_key.triggers import TriggerGuard, TriggerRefusal, guard_for
from rotation.db_key.verify import ColumnCheck, Finding, PopulationCheck

# The cutover's joins (the table with its side table) hash a million rows in a few batches, not dozens, while the app is
# down; with PostgreSQL 15's hash_mem_multiplier a hash may take twice this.
CUTOVER_WORK_MEM = "SET LOCAL work_mem = '64MB'"
# The row version a value was staged from, and the digest of the row's other columns at that version.
VERSION_COLUMNS = sql.SQL("src_tid tid, src_xmin xid, other bytea")


STAGE_SOURCE = ("per page after the cursor: pgp_sym_decrypt(<column>, <old>) once, INSERT INTO "
                "rotation_runbook.staged_<id> the new ciphertext pgp_sym_encrypt(..., <new>, '{options}'), "
                "hmac(<plaintext>, <new>, 'sha256') and verified = (the new ciphertext decrypts with <new> to that "
                "digest), with the cursor; --max-rate throttles; the app's table is only read")
CUTOVER_SOURCE = ("rows of {table} whose version (ctid, xmin) is not the one staged: inserted, or with changed "
                  "ciphertexts (sha256 of ROW(<encrypted columns>)), staged again; changed in other columns only, "
                  "their version and other-columns digest taken again; then one UPDATE {table} SET <column> = "
                  "<verified staged ciphertext> where the row is the version staged from, triggers kept quiet, in "
                  "one transaction with the checkpoint")
PROOF_SOURCE = ("{table} LEFT JOIN rotation_runbook.staged_<id> ON {pk}: rows whose every encrypted column IS NOT "
                "DISTINCT FROM its verified staged ciphertext")


class StagedRotationError(ReencryptionError):
    """A staged rotation cannot start or go on (names the table and rows, never a key)."""


@dataclass(frozen=True)
class StagedJob:
    stage_id: int
    table: str
    phase: str
    rows_staged: int
    rows_total: int
    at_cutover: int
    job_id: int | None
    cipher_options: str

    @property
    def side_table(self) -> sql.Identifier:
        return sql.Identifier("rotation_runbook", f"staged_{self.stage_id}")

    @property
    def side_name(self) -> str:
        return f"rotation_runbook.staged_{self.stage_id}"


@dataclass(frozen=True)
class StageResult:
    job: StagedJob
    rows_this_run: int
    seconds: float
    resumed: bool


@dataclass(frozen=True)
class CutoverResult:
    job: StagedJob
    job_id: int
    stragglers_inserted: tuple[str, ...]
    stragglers_changed: tuple[str, ...]
    removed: int
    swapped: int
    rows: int
    equal: int
    at_cutover: int
    not_equal: tuple[str, ...]
    seconds: dict[str, float]
    triggers: str

    @property
    def proven(self) -> bool:
        return self.equal == self.rows and not self.not_equal


def _ensure_jobs(conn: psycopg.Connection) -> None:
    apply_runbook_schema(conn)  # V100 holds rotation_runbook.staged_job too
    conn.commit()


def _row(conn: psycopg.Connection, where: str, params: tuple[object, ...]) -> StagedJob | None:
    row = conn.execute(
        "SELECT stage_id, table_name, phase, rows_staged, rows_total, at_cutover, job_id, cipher_options "
        f"FROM rotation_runbook.staged_job WHERE {where} ORDER BY stage_id DESC LIMIT 1", params).fetchone()
    conn.commit()
    if row is None:
        return None
    return StagedJob(int(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4]), int(row[5]),
                     int(row[6]) if row[6] is not None else None, str(row[7]))


def find_staged(conn: psycopg.Connection, spec: TableSpec, old_key: Secret, new_key: Secret) -> StagedJob | None:
    """The staged job of this table from old_key to new_key (not abandoned), if any."""
    _ensure_jobs(conn)
    return _row(conn, "table_name = %s AND old_key_fp = %s AND new_key_fp = %s AND phase <> 'abandoned'",
                (spec.table, fingerprint(old_key), fingerprint(new_key)))


def staged_towards(conn: psycopg.Connection, new_key_fp: str) -> list[StagedJob]:
    """Every staged job (not abandoned, not done) whose target is the key with this fingerprint."""
    _ensure_jobs(conn)
    rows = conn.execute("SELECT stage_id FROM rotation_runbook.staged_job WHERE new_key_fp = %s "
                        "AND phase NOT IN ('abandoned', 'done') ORDER BY stage_id", (new_key_fp,)).fetchall()
    conn.commit()
    found = [_row(conn, "stage_id = %s", (int(r[0]),)) for r in rows]
    return [j for j in found if j is not None]


def _open(conn: psycopg.Connection, spec: TableSpec, old_key: Secret, new_key: Secret,
          cipher_options: str) -> tuple[StagedJob, bool]:
    """The staged job for these keys, created with its side table when there is none: (job, resumed)."""
    existing = find_staged(conn, spec, old_key, new_key)
    if existing is not None:
        if existing.phase not in ("done", "abandoned"):  # staged by a version without them: the cutover fills them
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS src_tid tid, ADD COLUMN IF NOT EXISTS "
                                 "src_xmin xid, ADD COLUMN IF NOT EXISTS other bytea").format(existing.side_table))
            conn.commit()
        return existing, True
    other = conn.execute("SELECT stage_id, old_key_fp, new_key_fp FROM rotation_runbook.staged_job WHERE "
                         "table_name = %s AND phase NOT IN ('done', 'abandoned')", (spec.table,)).fetchone()
    if other:
        raise StagedRotationError(
            f"a staged re-encryption of {spec.table} (staged job {other[0]}) is from key {other[1]} to {other[2]}: "
            "finish or abandon that rotation first")
    with conn.transaction():
        total = _count(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(spec.table)))
        row = conn.execute("INSERT INTO rotation_runbook.staged_job (table_name, old_key_fp, new_key_fp, "
                           "cipher_options, rows_total) VALUES (%s, %s, %s, %s, %s) RETURNING stage_id",
                           (spec.table, fingerprint(old_key), fingerprint(new_key), cipher_options, total)).fetchone()
        stage_id = int(row[0]) if row else 0
        columns = sql.SQL(", ").join(
            sql.SQL("{n} bytea, {d} bytea").format(n=sql.Identifier(f"n{i}"), d=sql.Identifier(f"d{i}"))
            for i in range(len(spec.columns)))
        conn.execute(sql.SQL("CREATE TABLE {} (pk text PRIMARY KEY, src bytea NOT NULL, {}, verified boolean NOT "
                             "NULL, at_cutover boolean NOT NULL DEFAULT false, {})").format(
            sql.Identifier("rotation_runbook", f"staged_{stage_id}"), columns, VERSION_COLUMNS))
    job = _row(conn, "stage_id = %s", (stage_id,))
    if job is None:
        raise StagedRotationError(f"staged job {stage_id} of {spec.table} vanished")
    return job, False


def _count(conn: psycopg.Connection, query: sql.Composed | str, params: tuple[object, ...] = ()) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def _src(spec: TableSpec, alias: str = "t") -> sql.Composed:
    """Digest of a row's current ciphertexts (bytea_output fixed to hex by the caller): changes when any does."""
    return sql.SQL("sha256(convert_to(ROW({})::text, 'UTF8'))").format(
        sql.SQL(", ").join(sql.SQL("{a}.{c}").format(a=sql.Identifier(alias), c=sql.Identifier(c))
                           for c in spec.columns))


def _stage_plaintext(spec: TableSpec, column: str, *, by_ids: bool, left: str | None) -> sql.Composed:
    """A page's values decrypt with the old key (values recorded as left excepted). Rows taken up again at the cutover
    are decrypted column by column with the key that opens each value: a writer the tool does not know may have put
    one column of a row under the old key after the others were swapped to the new one."""
    if not by_ids:
        return old_plaintext(spec, column, left)
    return sql.SQL("COALESCE(rotation_runbook.try_decrypt(t.{c}, " + OLD + "), rotation_runbook.try_decrypt(t.{c}, "
                   + NEW + "))").format(c=sql.Identifier(column))


def _stage_statement(spec: TableSpec, job: StagedJob, key_type: str, *, by_ids: bool,
                     left: str | None = None) -> sql.Composed:
    """Stage one page (after the cursor) or the listed rows: decrypt once, encrypt under the new key, digest, and
    verify the new ciphertext by decrypting it with the new key. Upserts: a row staged again replaces its entry. A
    value with no plaintext here (left as found: no key opens it) is staged as its own bytes, with no digest."""
    ids = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table), "kt": sql.SQL(key_type)}
    n = range(len(spec.columns))
    plain = sql.SQL(", ").join(sql.SQL("{d} AS {p}, t.{c} AS {r}").format(
        d=_stage_plaintext(spec, c, by_ids=by_ids, left=left), c=sql.Identifier(c), p=sql.Identifier(f"p{i}"),
        r=sql.Identifier(f"r{i}")) for i, c in enumerate(spec.columns))
    enc = sql.SQL(", ").join(sql.SQL("COALESCE(pgp_sym_encrypt(p.{p}, " + NEW + ", %(opts)s), p.{r}) AS {n}, "
                                     "hmac(p.{p}, " + NEW + ", 'sha256') AS {d}").format(
        p=sql.Identifier(f"p{i}"), r=sql.Identifier(f"r{i}"), n=sql.Identifier(f"n{i}"), d=sql.Identifier(f"d{i}"))
        for i in n)
    cols = sql.SQL(", ").join(sql.SQL("{n}, {d}").format(n=sql.Identifier(f"n{i}"), d=sql.Identifier(f"d{i}"))
                              for i in n)
    check = sql.SQL(" AND ").join(sql.SQL("hmac(rotation_runbook.try_decrypt(e.{n}, " + NEW + "), " + NEW
                                          + ", 'sha256') IS NOT DISTINCT FROM e.{d}").format(
        n=sql.Identifier(f"n{i}"), d=sql.Identifier(f"d{i}")) for i in n)
    updates = sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                                 for c in ["src", *(f"{x}{i}" for i in n for x in "nd"), "verified", "at_cutover",
                                           "src_tid", "src_xmin", "other"])
    where = (sql.SQL("t.{pk} = ANY(CAST(%(ids)s AS {kt}[]))").format(**ids) if by_ids else
             sql.SQL("(%(after)s::text IS NULL OR t.{pk} > CAST(%(after)s::text AS {kt}))").format(**ids))
    return sql.SQL("""
WITH page AS (
    SELECT t.{pk} AS k, t.ctid AS src_tid, t.xmin AS src_xmin, {other} AS other, {src} AS src, {plain}
    FROM {t} t WHERE {where} ORDER BY t.{pk} LIMIT %(n)s
), e AS (
    SELECT p.k, p.src_tid, p.src_xmin, p.other, p.src, {enc} FROM page p
), ins AS (
    INSERT INTO {side} (pk, src, {cols}, verified, at_cutover, src_tid, src_xmin, other)
    SELECT e.k::text, e.src, {cols}, {check}, %(cutover)s, e.src_tid, e.src_xmin, e.other FROM e
    ON CONFLICT (pk) DO UPDATE SET {updates}
    RETURNING verified
)
SELECT (SELECT count(*) FROM page), (SELECT max(k)::text FROM page),
       (SELECT count(*) FILTER (WHERE NOT verified) FROM ins)
""").format(src=_src(spec), other=other_columns_digest(spec, "t"), plain=plain, where=where, enc=enc,
            side=job.side_table, cols=cols, check=check, updates=updates, **ids)


def stage(dsn: str, spec: TableSpec, old_key: Secret, new_key: Secret, *, max_rate: float | None = None,
          batch_size: int = 500, cipher_options: str = DEFAULT_CIPHER_OPTIONS,
          on_progress: ProgressCallback | None = None) -> StageResult:
    """Staging, while the app runs: every row not yet staged, page by page after the cursor, throttled to max_rate
    rows/s. Resumes after the last committed page. `on_progress` hears of every page (final: the last)."""
    started = time.monotonic()
    keys = {"old": old_key, "new": new_key}
    with connect(dsn, keys=keys) as conn:
        job, resumed = _open(conn, spec, old_key, new_key, cipher_options)
        if job.phase != "staging":
            return StageResult(job, 0, time.monotonic() - started, resumed)
        key_type = pk_type(conn, spec)
        spec = with_others(conn, spec)
        left = unopened.left_fp(conn, new_key, spec)
        conn.commit()  # each page must be a transaction of its own, not a savepoint in one long transaction
        statement = _stage_statement(spec, job, key_type, by_ids=False, left=left)
        done_before, done = job.rows_staged, 0
        if max_rate:  # throttled: about four pages a second, so the rate holds from the first page on
            batch_size = max(1, min(batch_size, int(max_rate / 4) or 1))
        while True:
            page_started = time.monotonic()
            with conn.transaction():
                for setting in DIGEST_SETTINGS:  # the digests' text of a row must not depend on the session
                    conn.execute(setting)
                cursor = conn.execute("SELECT cursor FROM rotation_runbook.staged_job WHERE stage_id = %s "
                                      "FOR UPDATE", (job.stage_id,)).fetchone()
                try:
                    row = conn.execute(statement, {"after": cursor[0] if cursor else None, "n": batch_size,
                                                   "opts": job.cipher_options, "cutover": False}).fetchone()
                except psycopg.errors.ExternalRoutineInvocationException:  # "Wrong key or corrupt data"
                    raise StagedRotationError(_page_unreadable(conn, spec, key_type, cursor[0] if cursor else None,
                                                               batch_size, left)) from None
                count, last, unverified = (int(row[0]), row[1], int(row[2])) if row else (0, None, 0)
                if unverified:
                    raise StagedRotationError(f"staging of {spec.table}: {unverified} staged values do not decrypt "
                                              "with the new key to their plaintext digest; nothing of that page kept")
                finished = count < batch_size
                conn.execute("UPDATE rotation_runbook.staged_job SET cursor = COALESCE(%s, cursor), rows_staged = "
                             "rows_staged + %s, phase = CASE WHEN %s THEN 'staged' ELSE phase END, staged_at = CASE "
                             "WHEN %s THEN now() END WHERE stage_id = %s",
                             (last, count, finished, finished, job.stage_id))
            done += count
            if on_progress:
                on_progress(Progress(done_before + done, max(job.rows_total, done_before + done),
                                     time.monotonic() - started, final=finished, since=done_before))
            if finished:
                break
            if max_rate:  # throttle: a page of n rows takes at least n / max_rate seconds
                time.sleep(max(0.0, count / max_rate - (time.monotonic() - page_started)))
        final = _row(conn, "stage_id = %s", (job.stage_id,))
    return StageResult(final or job, done, time.monotonic() - started, resumed)


def _page_unreadable(conn: psycopg.Connection, spec: TableSpec, key_type: str, after: str | None, size: int,
                     left: str | None) -> str:
    """Name the values of the failed page the old key does not open (each row and column), found again with
    try_decrypt after the page was rolled back."""
    conn.rollback()
    ids = [str(r[0]) for r in conn.execute(sql.SQL(
        "SELECT t.{pk}::text FROM {t} t WHERE (%(after)s::text IS NULL OR t.{pk} > CAST(%(after)s::text AS {kt})) "
        "ORDER BY t.{pk} LIMIT %(n)s").format(pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table),
                                              kt=sql.SQL(key_type)), {"after": after, "n": size})]
    bad = [line.replace("(under neither key)", "(no key opens it)") for line in
           unreadable_in(conn, spec, ids, key_type, left)]
    bad += _under_new(conn, spec, ids, key_type)
    conn.rollback()
    return (f"staging of {spec.table} stopped after {spec.pk}={after or '(start)'}: the old key does not open "
            + ("; ".join(bad) or "a value of the next page") + ". Nothing of that page was staged; the app's data is "
            "untouched")


def _under_new(conn: psycopg.Connection, spec: TableSpec, ids: list[str], key_type: str) -> list[str]:
    found = []
    for column in spec.columns:
        found += [f"{spec.table}.{column} {spec.pk}={r[0]} (already under the new key)" for r in conn.execute(sql.SQL(
            "SELECT t.{pk}::text FROM {t} t WHERE t.{pk} = ANY(CAST(%(ids)s AS {kt}[])) AND t.{c} IS NOT NULL AND "
            "rotation_runbook.try_decrypt(t.{c}, " + OLD + ") IS NULL AND rotation_runbook.try_decrypt(t.{c}, " + NEW
            + ") IS NOT NULL ORDER BY t.{pk} LIMIT 20").format(pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table),
                                                               c=sql.Identifier(column), kt=sql.SQL(key_type)),
            {"ids": ids})]
    return found


# --- cutover (the app is stopped) -------------------------------------------------------------------------------------

def _stragglers(conn: psycopg.Connection, spec: TableSpec, job: StagedJob, key_type: str
                ) -> tuple[list[str], list[str]]:
    """(inserted since staging, ciphertext changed since staging) row ids, read with the app stopped. Only rows that
    are no longer the version staged from, and do not hold their staged ciphertexts already (swapped by an earlier
    run), are looked at beyond their version. Those changed in other columns only keep their staged values: their
    version and other-columns digest are taken again here."""
    enc = sql.SQL(", ").join(sql.SQL("t.{c}").format(c=sql.Identifier(c)) for c in spec.columns)
    staged = sql.SQL(", ").join(sql.SQL("s.{n}").format(n=sql.Identifier(f"n{i}")) for i in range(len(spec.columns)))
    names = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table), "side": job.side_table,
             "src": _src(spec), "other": other_columns_digest(spec, "t"), "kt": sql.SQL(key_type)}
    with conn.transaction():
        for setting in (*DIGEST_SETTINGS, CUTOVER_WORK_MEM):
            conn.execute(setting)
        rows = conn.execute(sql.SQL(
            "SELECT t.{pk}::text, s.pk IS NULL, s.src IS DISTINCT FROM {src} FROM {t} t "
            "LEFT JOIN {side} s ON s.pk = t.{pk}::text WHERE s.pk IS NULL OR ((t.ctid IS DISTINCT FROM s.src_tid OR "
            "t.xmin IS DISTINCT FROM s.src_xmin) AND ROW({enc}) IS DISTINCT FROM ROW({staged})) ORDER BY t.{pk}"
        ).format(enc=enc, staged=staged, **names)).fetchall()
        other_only = [str(r[0]) for r in rows if not r[1] and not r[2]]
        if other_only:
            conn.execute(sql.SQL("UPDATE {side} s SET src_tid = t.ctid, src_xmin = t.xmin, other = {other} FROM {t} t "
                                 "WHERE s.pk = ANY(%s) AND t.{pk} = CAST(s.pk AS {kt})").format(**names),
                         (other_only,))
    return [str(r[0]) for r in rows if r[1]], [str(r[0]) for r in rows if not r[1] and r[2]]


def _swap_statement(spec: TableSpec, job: StagedJob, key_type: str) -> sql.Composed:
    """Every verified staged value in, where the row is still the version it was staged from."""
    sets = sql.SQL(", ").join(sql.SQL("{c} = s.{n}").format(c=sql.Identifier(c), n=sql.Identifier(f"n{i}"))
                              for i, c in enumerate(spec.columns))
    return sql.SQL("""
UPDATE {t} t SET {sets} FROM {side} s
WHERE t.{pk} = CAST(s.pk AS {kt}) AND s.verified AND t.ctid = s.src_tid AND t.xmin = s.src_xmin
""").format(sets=sets, side=job.side_table, pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table),
            kt=sql.SQL(key_type))


def cutover(dsn: str, spec: TableSpec, old_key: Secret, new_key: Secret, *, skip_changed: bool = False
            ) -> CutoverResult:
    """The app is stopped: stragglers staged again, the staged values swapped in, and the population proven.
    Every part is idempotent: a kill at any point and a rerun finish it. (`skip_changed` exists only so that a test
    can break the cutover and see its proof fail.)"""
    keys = {"old": old_key, "new": new_key}
    seconds: dict[str, float] = {}
    with connect(dsn, keys=keys) as conn:
        job = need_job(find_staged(conn, spec, old_key, new_key), spec)
        if job.phase == "staging":
            raise StagedRotationError(f"the staging of {spec.table} (staged job {job.stage_id}) has not finished: "
                                      "run the staging step again before the cutover")
        try:
            guard = guard_for(conn, spec.table)
        except TriggerRefusal as exc:
            raise StagedRotationError(str(exc)) from None
        key_type = pk_type(conn, spec)
        spec = with_others(conn, spec)
        conn.commit()
        t0 = time.monotonic()
        # (after a swap, too: a writer the tool does not know may have written since; rows holding their staged
        # ciphertexts are not looked at)
        inserted, changed = (_stragglers(conn, spec, job, key_type) if job.phase in ("staged", "cutover", "swapped")
                             else ([], []))
        removed = _restage(conn, spec, job, key_type, inserted + ([] if skip_changed else changed),
                           unopened.left_fp(conn, new_key, spec))
        # (rows swapped by an earlier run are skipped by the swap: they are no longer the version staged from)
        seconds["stragglers"] = time.monotonic() - t0
        job_id, _ = start_or_resume_job(conn, spec, old_key, new_key, ranges=1, cipher_options=job.cipher_options)
        conn.execute("UPDATE rotation_runbook.reencrypt_job SET snapshot_taken = true, triggers = %s WHERE job_id = %s",
                     (guard.mode, job_id))
        restaged = inserted + ([] if skip_changed else changed)
        if restaged:  # rows staged again after an earlier swap pass: the swap goes over the side table once more
            conn.execute("UPDATE rotation_runbook.reencrypt_range SET done = false, cursor = NULL WHERE job_id = %s",
                         (job_id,))
        conn.execute("UPDATE rotation_runbook.staged_job SET phase = 'cutover', job_id = %s, at_cutover = "
                     "(SELECT count(*) FROM " + job.side_name + " WHERE at_cutover) WHERE stage_id = %s "
                     "AND phase IN ('staged', 'cutover')", (job_id, job.stage_id))
        conn.commit()
        t0 = time.monotonic()
        swapped = _swap(conn, spec, job, key_type, job_id, guard)
        seconds["swap"] = time.monotonic() - t0
        t0 = time.monotonic()
        rows, equal, at_cut, not_equal = prove(conn, spec, job)
        seconds["proof"] = time.monotonic() - t0
        if equal == rows:  # the cutover's job is done too: the next rotation of this table may start
            conn.execute("UPDATE rotation_runbook.staged_job SET phase = 'swapped', swapped_at = now() "
                         "WHERE stage_id = %s AND phase = 'cutover'", (job.stage_id,))
            conn.execute("UPDATE rotation_runbook.reencrypt_job SET status = 'done', finished_at = now() "
                         "WHERE job_id = %s AND status = 'running'", (job_id,))
            conn.commit()
        final = _row(conn, "stage_id = %s", (job.stage_id,)) or job
    return CutoverResult(final, job_id, tuple(inserted), tuple(changed), removed, swapped, rows, equal, at_cut,
                         tuple(not_equal), seconds, guard.describe())


def need_job(job: StagedJob | None, spec: TableSpec) -> StagedJob:
    if job is None:
        raise StagedRotationError(f"nothing of {spec.table} was staged for these keys: run the staging step first")
    return job


def _restage(conn: psycopg.Connection, spec: TableSpec, job: StagedJob, key_type: str, ids: list[str],
             left: str | None = None, batch: int = 500) -> int:
    """Stage the listed rows again (at_cutover), each value with the key that opens it (values left as found kept as
    they are), and drop staged rows whose row is gone. Returns rows dropped. A value no key opens that was not found
    before the app stopped refuses the cutover, naming its row and column."""
    statement = _stage_statement(spec, job, key_type, by_ids=True, left=left)
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        with conn.transaction():
            for setting in DIGEST_SETTINGS:
                conn.execute(setting)
            bad = unreadable_in(conn, spec, chunk, key_type, left)
            if bad:
                raise StagedRotationError(
                    f"the cutover of {spec.table} stopped: rows written since staging hold values no key opens: "
                    + "; ".join(bad) + ". Nothing was swapped; the next run finds them before the app stops (leave "
                    "them as they are with --leave-unreadable)")
            row = conn.execute(statement, {"ids": chunk, "n": len(chunk), "opts": job.cipher_options,
                                           "cutover": True}).fetchone()
            if row and int(row[2]):
                raise StagedRotationError(f"the cutover of {spec.table}: {int(row[2])} values staged again do not "
                                          "decrypt with the new key to their plaintext digest")
    gone = conn.execute(sql.SQL("DELETE FROM {side} s WHERE NOT EXISTS (SELECT 1 FROM {t} t WHERE t.{pk} = "
                                "CAST(s.pk AS {kt}))").format(side=job.side_table, t=sql.Identifier(spec.table),
                                                              pk=sql.Identifier(spec.pk), kt=sql.SQL(key_type)))
    conn.commit()
    return gone.rowcount


def _swap(conn: psycopg.Connection, spec: TableSpec, job: StagedJob, key_type: str, job_id: int,
          guard: TriggerGuard) -> int:
    """The whole side table in one transaction with the job's checkpoint (reencrypt_range 0). The app is stopped, so
    holding the table for the swap costs nothing, and a kill leaves every row as it was: nothing to take up but the
    swap itself. One statement, not pages: no per-page trigger switching, one join."""
    with conn.transaction():
        conn.execute(CUTOVER_WORK_MEM)
        guard.begin(conn)
        claimed = conn.execute("SELECT 1 FROM rotation_runbook.reencrypt_range WHERE job_id = %s AND range_no = 0 "
                               "AND NOT done FOR UPDATE", (job_id,)).fetchone()
        swapped = conn.execute(_swap_statement(spec, job, key_type)).rowcount if claimed else 0
        conn.execute("UPDATE rotation_runbook.reencrypt_range SET rows_done = rows_done + %s, done = true "
                     "WHERE job_id = %s AND range_no = 0", (swapped, job_id))
        guard.end(conn)
    return swapped


def prove(conn: psycopg.Connection, spec: TableSpec, job: StagedJob) -> tuple[int, int, int, list[str]]:
    """(rows in the table, rows holding exactly their verified staged ciphertexts, of which staged at cutover, the
    first rows that do not). Counts first, in a query PostgreSQL may run in parallel; row ids only when one fails."""
    enc = sql.SQL(", ").join(sql.SQL("t.{c}").format(c=sql.Identifier(c)) for c in spec.columns)
    staged = sql.SQL(", ").join(sql.SQL("s.{n}").format(n=sql.Identifier(f"n{i}")) for i in range(len(spec.columns)))
    names = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table), "side": job.side_table,
             "ok": sql.SQL("COALESCE(s.verified AND ROW({enc}) IS NOT DISTINCT FROM ROW({staged}), false)").format(
                 enc=enc, staged=staged)}
    join = "FROM {t} t LEFT JOIN {side} s ON s.pk = t.{pk}::text"
    conn.execute(CUTOVER_WORK_MEM)
    row = conn.execute(sql.SQL("SELECT count(*), count(*) FILTER (WHERE {ok}), count(*) FILTER (WHERE {ok} AND "
                               "s.at_cutover) " + join).format(**names)).fetchone()
    rows, equal, at_cut = (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)
    failing = [] if equal == rows else [str(r[0]) for r in conn.execute(sql.SQL(
        "SELECT t.{pk}::text " + join + " WHERE NOT {ok} ORDER BY t.{pk} LIMIT 10").format(**names))]
    conn.commit()
    return rows, equal, at_cut, failing


def finish(conn: psycopg.Connection, new_key_fp: str, *, abandoned: bool = False) -> list[int]:
    """The rotation finished (or was abandoned): drop the side tables of its staged jobs, keep their summaries."""
    dropped = []
    for job in staged_towards(conn, new_key_fp):
        with conn.transaction():
            if not abandoned and job.job_id is not None:  # the job's summary keeps how many values were proven
                nonnull = sql.SQL(" + ").join(sql.SQL("count({})").format(sql.Identifier(f"d{i}"))
                                              for i in range(_column_count(conn, job)))
                conn.execute(sql.SQL("UPDATE rotation_runbook.reencrypt_job SET verified_values = (SELECT {} FROM "
                                     "{}) WHERE job_id = %s").format(nonnull, job.side_table), (job.job_id,))
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(job.side_table))
            conn.execute("UPDATE rotation_runbook.staged_job SET phase = %s, finished_at = now() WHERE stage_id = %s",
                         ("abandoned" if abandoned else "done", job.stage_id))
        dropped.append(job.stage_id)
    return dropped


# --- verification of a swapped staged job -----------------------------------------------------------------------------

# Only the rows that fail are decrypted, to say why.
STAGED_FAILURES = """
SELECT why, count(*), (array_agg(k ORDER BY k))[1:10] FROM (
    SELECT t.{pk}::text AS k,
        CASE WHEN s.pk IS NULL THEN 'not staged'
             WHEN s.{d} IS NULL AND s.{n} IS NOT NULL THEN 'left as found (no key opened it), since changed'
             WHEN t.{c} IS NULL AND s.{d} IS NOT NULL THEN 'value became NULL'
             WHEN t.{c} IS NOT NULL AND s.{d} IS NULL THEN 'was NULL, now has a value'
             WHEN rotation_runbook.try_decrypt(t.{c}, """ + OLD + """) IS NOT NULL THEN 'still under the old key'
             WHEN t.{c} IS NOT NULL AND rotation_runbook.try_decrypt(t.{c}, """ + NEW + """) IS NULL
                 THEN 'under neither key'
             WHEN hmac(rotation_runbook.try_decrypt(t.{c}, """ + NEW + "), " + NEW + """, 'sha256')
                 IS DISTINCT FROM s.{d} THEN 'plaintext changed'
             WHEN NOT s.verified THEN 'staged value not verified'
             ELSE 'does not hold its verified staged ciphertext' END AS why
    FROM {t} t LEFT JOIN {side} s ON s.pk = t.{pk}::text
    WHERE s.pk IS NULL OR NOT s.verified OR t.{c} IS DISTINCT FROM s.{n}
) f GROUP BY why ORDER BY why
"""
VERIFY_SOURCE = ("one pass over {table} LEFT JOIN rotation_runbook.staged_<id> ON {pk}: per column, each value equals "
                 "its verified staged ciphertext (decrypted with the new key to its plaintext digest when staged), "
                 "NULLs kept; every row staged or taken up at the cutover; its other columns' digest "
                 "(sha256 of ROW(<other columns>)::text) the one taken from the version swapped; the old key: the "
                 "sweep, once the app is back")


def _staged_check(spec: TableSpec, job: StagedJob) -> sql.Composed:
    """One pass over the table and its side table: four counts per column, the rows unknown to the staging, the rows
    whose other columns changed. Plain counts, so that PostgreSQL may run it in parallel."""
    # a value staged as its own bytes with no digest was left as found (no key opens it): counted apart, never as
    # verified, and only while it still holds those bytes
    per_column = sql.SQL(", ").join(sql.SQL(
        "count(*) FILTER (WHERE s.{d} IS NOT NULL), "
        "count(*) FILTER (WHERE s.pk IS NOT NULL AND s.{d} IS NULL AND (s.{n} IS NULL OR t.{c} IS DISTINCT FROM "
        "s.{n})), "
        "count(*) FILTER (WHERE s.pk IS NOT NULL AND s.{d} IS NULL AND s.{n} IS NULL AND t.{c} IS NULL), "
        "count(*) FILTER (WHERE s.{d} IS NOT NULL AND s.verified AND t.{c} = s.{n}), "
        "count(*) FILTER (WHERE s.{d} IS NULL AND s.{n} IS NOT NULL AND t.{c} = s.{n})").format(
            c=sql.Identifier(c), n=sql.Identifier(f"n{i}"), d=sql.Identifier(f"d{i}"))
        for i, c in enumerate(spec.columns))
    return sql.SQL("""
SELECT {per_column}, count(*) FILTER (WHERE s.pk IS NULL), count(*) FILTER (WHERE {changed}), count(*),
       (SELECT count(*) FROM {side})
FROM {t} t LEFT JOIN {side} s ON s.pk = t.{pk}::text
""").format(per_column=per_column, changed=_changed(spec), pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table),
            side=job.side_table)


def _changed(spec: TableSpec) -> sql.Composed:
    """A staged row whose other columns are not what they were at the version staged (and swapped)."""
    return sql.SQL("s.pk IS NOT NULL AND s.other IS DISTINCT FROM {}").format(other_columns_digest(spec, "t"))


def _first_ids(conn: psycopg.Connection, spec: TableSpec, job: StagedJob, condition: sql.Composable) -> tuple[str, ...]:
    """The first ten row ids of the table (joined to the side table) meeting the condition: only asked on failure."""
    return tuple(str(r[0]) for r in conn.execute(sql.SQL(
        "SELECT t.{pk}::text FROM {t} t LEFT JOIN {side} s ON s.pk = t.{pk}::text WHERE {cond} ORDER BY t.{pk} "
        "LIMIT 10").format(pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table), side=job.side_table,
                           cond=condition)))


def verify_staged(conn: psycopg.Connection, spec: TableSpec, job: StagedJob, job_id: int, old_key: Secret,
                  new_key: Secret) -> PopulationCheck:
    """After the swap, in one pass: each value is its verified staged ciphertext (the decryption that proved it ran at
    staging; a ciphertext identical byte for byte decrypts identically), so nothing is decrypted while the app is
    down; every row was staged or taken up at the cutover; no row's other columns changed. `job_id` is the cutover's
    re-encryption job (its evidence names it)."""
    load_keys(conn, {"old": old_key, "new": new_key})
    with conn.transaction():
        spec = with_others(conn, spec)
        for setting in (*DIGEST_SETTINGS, CUTOVER_WORK_MEM):
            conn.execute(setting)
        row = conn.execute(_staged_check(spec, job)).fetchone()
        if row is None:
            raise StagedRotationError(f"the check of {spec.table} returned nothing")
        columns = [ColumnCheck(c, int(row[5 * i]), int(row[5 * i + 1]), int(row[5 * i + 2]), int(row[5 * i + 3]),
                               readable_old=0, left=int(row[5 * i + 4]))  # the old key: the sweep
                   for i, c in enumerate(spec.columns)]
        unknown, changed, rows_after, rows_before = row[5 * len(spec.columns):]
        findings: list[Finding] = []
        for i, (column, check) in enumerate(zip(spec.columns, columns, strict=True)):
            if not check.ok:  # only now is anything decrypted: to say why
                names = {"c": sql.Identifier(column), "n": sql.Identifier(f"n{i}"), "d": sql.Identifier(f"d{i}"),
                         "pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table), "side": job.side_table}
                findings += [Finding(spec.table, spec.pk, column, str(why), int(n), tuple(str(x) for x in pks or ()))
                             for why, n, pks in conn.execute(sql.SQL(STAGED_FAILURES).format(**names)).fetchall()]
        if unknown:
            findings.append(Finding(spec.table, spec.pk, None, "neither staged nor taken up at the cutover: run the "
                                    "rotation again to take them up", int(unknown),
                                    _first_ids(conn, spec, job, sql.SQL("s.pk IS NULL"))))
        if changed:
            findings.append(Finding(spec.table, spec.pk, None, "changed in columns other than the encrypted ones",
                                    int(changed), _first_ids(conn, spec, job, _changed(spec))))
    conn.commit()
    return PopulationCheck(spec.table, int(rows_before), int(rows_after), tuple(columns), tuple(findings))


def _column_count(conn: psycopg.Connection, job: StagedJob) -> int:
    """How many encrypted columns the side table holds (n0/d0, n1/d1, ...)."""
    return _count(conn, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'rotation_runbook' "
                        "AND table_name = %s AND column_name ~ '^d[0-9]+$'", (f"staged_{job.stage_id}",))
