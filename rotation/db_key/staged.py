"""The staged DB key rotation: the expensive work while the app still runs, a short cutover while it is stopped.

    staging   (app running; rotation state `create`, the new key already kept in the PENDING file) every row's values
              are decrypted under the old key once and their new ciphertext is written to a side table,
              rotation_runbook.staged_<id>, keyed by primary key, with a digest of the row's current ciphertexts
              (`src`), each value's keyed plaintext digest (HMAC-SHA-256 under the new key) and `verified`: the new
              ciphertext decrypted with the new key gives that digest. Nothing of the app's table is written or locked
              (plain SELECTs). Pages are throttled (`max_rate` rows/s); each commits with its cursor, so a kill loses
              at most one page and a rerun goes on after it.
    cutover   (app stopped, .env holding the new key; state `set`)
              1. stragglers: rows inserted since staging, and rows whose ciphertext changed since it (their `src`
                 differs, and they do not hold their staged ciphertext already), are staged again now, flagged
                 `at_cutover`; staged rows whose row is gone are dropped;
              2. swap: one UPDATE per page sets each value to its verified staged ciphertext where the row still holds
                 what was staged from; no trigger fires (rotation.db_key.triggers); the same statement writes the
                 values' plaintext digests and the row's other-columns digest into rotation_runbook.plaintext_digest
                 for the cutover's re-encryption job, committed with the job's checkpoint;
              3. proof: every row of the table holds exactly its verified staged ciphertexts (a population: rows
                 equal / rows in the table), counting those staged at cutover.
    after     the usual verification (rotation.db_key.verify against the digests) and, once the app is back, the
              completeness sweep; the side table is dropped when the rotation finishes or is abandoned.

Keys reach the server only through the session's key table (COPY FROM STDIN), never in SQL text or parameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from rotation.core.database import apply_runbook_schema, connect, key_ref, load_keys
from rotation.core.secret import Secret, fingerprint
from rotation.db_key.reencrypt import (
    DEFAULT_CIPHER_OPTIONS,
    DIGEST_SETTINGS,
    Progress,
    ReencryptionError,
    TableSpec,
    other_columns_digest,
    pk_type,
    start_or_resume_job,
)
from rotation.db_key.triggers import TriggerGuard, TriggerRefusal, guard_for
from rotation.db_key.verify import ColumnCheck, Finding, PopulationCheck, row_findings

OLD, NEW = key_ref("old"), key_ref("new")

JOBS_DDL = """
CREATE TABLE IF NOT EXISTS rotation_runbook.staged_job (
    stage_id BIGSERIAL PRIMARY KEY,
    table_name TEXT NOT NULL,
    old_key_fp TEXT NOT NULL,
    new_key_fp TEXT NOT NULL,
    cipher_options TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT 'staging'
        CHECK (phase IN ('staging', 'staged', 'cutover', 'swapped', 'done', 'abandoned')),
    cursor TEXT,
    rows_staged BIGINT NOT NULL DEFAULT 0,
    rows_total BIGINT NOT NULL,
    at_cutover BIGINT NOT NULL DEFAULT 0,
    job_id BIGINT,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    staged_at TIMESTAMPTZ,
    swapped_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
)
"""
STAGE_SOURCE = ("per page after the cursor: pgp_sym_decrypt(<column>, <old>) once, INSERT INTO "
                "rotation_runbook.staged_<id> the new ciphertext pgp_sym_encrypt(..., <new>, '{options}'), "
                "hmac(<plaintext>, <new>, 'sha256') and verified = (the new ciphertext decrypts with <new> to that "
                "digest), with the cursor; --max-rate throttles; the app's table is only read")
CUTOVER_SOURCE = ("rows of {table} inserted or whose ciphertexts changed since staging (sha256 of ROW(<encrypted "
                  "columns>)) staged again; then per page: UPDATE {table} SET <column> = <verified staged "
                  "ciphertext> where the row still holds what was staged from, triggers kept quiet, the row's "
                  "other-columns digest recorded, with the checkpoint")
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


ProgressCallback = Callable[[Progress], None]


def _ensure_jobs(conn: psycopg.Connection) -> None:
    apply_runbook_schema(conn)
    conn.execute(JOBS_DDL)
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
                             "NULL, at_cutover boolean NOT NULL DEFAULT false)").format(
            sql.Identifier("rotation_runbook", f"staged_{stage_id}"), columns))
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


def _stage_statement(spec: TableSpec, job: StagedJob, key_type: str, *, by_ids: bool) -> sql.Composed:
    """Stage one page (after the cursor) or the listed rows: decrypt once, encrypt under the new key, digest, and
    verify the new ciphertext by decrypting it with the new key. Upserts: a row staged again replaces its entry."""
    ids = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table), "kt": sql.SQL(key_type)}
    n = range(len(spec.columns))
    plain = sql.SQL(", ").join(sql.SQL("pgp_sym_decrypt(t.{c}, " + OLD + ") AS {p}").format(
        c=sql.Identifier(c), p=sql.Identifier(f"p{i}")) for i, c in enumerate(spec.columns))
    enc = sql.SQL(", ").join(sql.SQL("pgp_sym_encrypt(p.{p}, " + NEW + ", %(opts)s) AS {n}, hmac(p.{p}, " + NEW
                                     + ", 'sha256') AS {d}").format(p=sql.Identifier(f"p{i}"),
                                                                    n=sql.Identifier(f"n{i}"),
                                                                    d=sql.Identifier(f"d{i}")) for i in n)
    cols = sql.SQL(", ").join(sql.SQL("{n}, {d}").format(n=sql.Identifier(f"n{i}"), d=sql.Identifier(f"d{i}"))
                              for i in n)
    check = sql.SQL(" AND ").join(sql.SQL("hmac(rotation_runbook.try_decrypt(e.{n}, " + NEW + "), " + NEW
                                          + ", 'sha256') IS NOT DISTINCT FROM e.{d}").format(
        n=sql.Identifier(f"n{i}"), d=sql.Identifier(f"d{i}")) for i in n)
    updates = sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                                 for c in ["src", *(f"{x}{i}" for i in n for x in "nd"), "verified", "at_cutover"])
    where = (sql.SQL("t.{pk} = ANY(CAST(%(ids)s AS {kt}[]))").format(**ids) if by_ids else
             sql.SQL("(%(after)s::text IS NULL OR t.{pk} > CAST(%(after)s::text AS {kt}))").format(**ids))
    return sql.SQL("""
WITH page AS (
    SELECT t.{pk} AS k, {src} AS src, {plain} FROM {t} t WHERE {where} ORDER BY t.{pk} LIMIT %(n)s
), e AS (
    SELECT p.k, p.src, {enc} FROM page p
), ins AS (
    INSERT INTO {side} (pk, src, {cols}, verified, at_cutover)
    SELECT e.k::text, e.src, {cols}, {check}, %(cutover)s FROM e
    ON CONFLICT (pk) DO UPDATE SET {updates}
    RETURNING verified
)
SELECT (SELECT count(*) FROM page), (SELECT max(k)::text FROM page),
       (SELECT count(*) FILTER (WHERE NOT verified) FROM ins)
""").format(src=_src(spec), plain=plain, where=where, enc=enc, side=job.side_table, cols=cols, check=check,
            updates=updates, **ids)


def stage(dsn: str, spec: TableSpec, old_key: Secret, new_key: Secret, *, max_rate: float | None = None,
          batch_size: int = 500, cipher_options: str = DEFAULT_CIPHER_OPTIONS,
          on_progress: ProgressCallback | None = None, progress_every_s: float = 2.0) -> StageResult:
    """Staging, while the app runs: every row not yet staged, page by page after the cursor, throttled to max_rate
    rows/s. Resumes after the last committed page."""
    started = time.monotonic()
    keys = {"old": old_key, "new": new_key}
    with connect(dsn, keys=keys) as conn:
        job, resumed = _open(conn, spec, old_key, new_key, cipher_options)
        if job.phase != "staging":
            return StageResult(job, 0, time.monotonic() - started, resumed)
        key_type = pk_type(conn, spec)
        conn.commit()  # each page must be a transaction of its own, not a savepoint in one long transaction
        statement = _stage_statement(spec, job, key_type, by_ids=False)
        done_before, done, last_report = job.rows_staged, 0, started
        if max_rate:  # throttled: about four pages a second, so the rate holds from the first page on
            batch_size = max(1, min(batch_size, int(max_rate / 4) or 1))
        while True:
            page_started = time.monotonic()
            with conn.transaction():
                conn.execute("SET LOCAL bytea_output = 'hex'")
                cursor = conn.execute("SELECT cursor FROM rotation_runbook.staged_job WHERE stage_id = %s "
                                      "FOR UPDATE", (job.stage_id,)).fetchone()
                try:
                    row = conn.execute(statement, {"after": cursor[0] if cursor else None, "n": batch_size,
                                                   "opts": job.cipher_options, "cutover": False}).fetchone()
                except psycopg.errors.ExternalRoutineInvocationException:  # "Wrong key or corrupt data"
                    raise StagedRotationError(
                        f"staging of {spec.table} stopped after {spec.pk}={cursor[0] if cursor else '(start)'}: a "
                        "value of the next page does not open with the old key. Nothing of that page was staged; "
                        "the app's data is untouched") from None
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
            now = time.monotonic()
            if on_progress and (finished or now - last_report >= progress_every_s):
                on_progress(Progress(done_before + done, max(job.rows_total, done_before + done), now - started))
                last_report = now
            if finished:
                break
            if max_rate:  # throttle: a page of n rows takes at least n / max_rate seconds
                time.sleep(max(0.0, count / max_rate - (time.monotonic() - page_started)))
        final = _row(conn, "stage_id = %s", (job.stage_id,))
    return StageResult(final or job, done, time.monotonic() - started, resumed)


# --- cutover (the app is stopped) -------------------------------------------------------------------------------------

def _stragglers(conn: psycopg.Connection, spec: TableSpec, job: StagedJob) -> tuple[list[str], list[str]]:
    """(inserted since staging, changed since staging) row ids, read with the app stopped."""
    enc = sql.SQL(", ").join(sql.SQL("t.{c}").format(c=sql.Identifier(c)) for c in spec.columns)
    staged = sql.SQL(", ").join(sql.SQL("s.{n}").format(n=sql.Identifier(f"n{i}")) for i in range(len(spec.columns)))
    conn.execute("SET bytea_output = 'hex'")
    rows = conn.execute(sql.SQL(
        "SELECT t.{pk}::text, s.pk IS NULL FROM {t} t LEFT JOIN {side} s ON s.pk = t.{pk}::text "
        "WHERE s.pk IS NULL OR (s.src <> {src} AND ROW({enc}) IS DISTINCT FROM ROW({staged})) ORDER BY t.{pk}").format(
            pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table), side=job.side_table, src=_src(spec),
            enc=enc, staged=staged)).fetchall()
    conn.commit()
    return [str(r[0]) for r in rows if r[1]], [str(r[0]) for r in rows if not r[1]]


def _swap_statement(spec: TableSpec, job: StagedJob, key_type: str) -> sql.Composed:
    n = range(len(spec.columns))
    ids = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table), "kt": sql.SQL(key_type)}
    sets = sql.SQL(", ").join(sql.SQL("{c} = p.{n}").format(c=sql.Identifier(c), n=sql.Identifier(f"n{i}"))
                              for i, c in enumerate(spec.columns))
    staged = sql.SQL(", ").join(sql.SQL("s.{n}, s.{d}").format(n=sql.Identifier(f"n{i}"), d=sql.Identifier(f"d{i}"))
                                for i in n)
    return sql.SQL("""
WITH page AS (
    SELECT s.pk, t.{pk} AS k, s.src, {staged}, {other} AS other, {cur} AS cur
    FROM {side} s JOIN {t} t ON t.{pk} = CAST(s.pk AS {kt})
    WHERE (%(after)s::text IS NULL OR s.pk > %(after)s::text) AND s.verified
    ORDER BY s.pk LIMIT %(n)s FOR UPDATE OF t
), upd AS (
    UPDATE {t} t SET {sets} FROM page p WHERE t.{pk} = p.k AND p.cur = p.src
    RETURNING t.{pk} AS k
), digests AS (
    INSERT INTO rotation_runbook.plaintext_digest (job_id, pk, column_name, digest)
    SELECT %(job)s, p.k::text, '', p.other FROM page p JOIN upd u ON u.k = p.k
    ON CONFLICT (job_id, pk, column_name) DO NOTHING
)
SELECT (SELECT count(*) FROM page), (SELECT max(pk) FROM page), (SELECT count(*) FROM upd)
""").format(staged=staged, other=other_columns_digest(spec, "t"), cur=_src(spec), side=job.side_table, sets=sets,
            **ids)


def cutover(dsn: str, spec: TableSpec, old_key: Secret, new_key: Secret, *, batch_size: int = 2000,
            skip_changed: bool = False) -> CutoverResult:
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
        conn.commit()
        t0 = time.monotonic()
        inserted, changed = _stragglers(conn, spec, job) if job.phase in ("staged", "cutover") else ([], [])
        removed = _restage(conn, spec, job, key_type, inserted + ([] if skip_changed else changed))
        # (the rows swapped already are skipped by the swap: they no longer hold what was staged from)
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
        swapped = _swap(conn, spec, job, key_type, job_id, guard, batch_size)
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
             batch: int = 500) -> int:
    """Stage the listed rows again (at_cutover), and drop staged rows whose row is gone. Returns rows dropped."""
    statement = _stage_statement(spec, job, key_type, by_ids=True)
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        with conn.transaction():
            conn.execute("SET LOCAL bytea_output = 'hex'")
            try:
                row = conn.execute(statement, {"ids": chunk, "n": len(chunk), "opts": job.cipher_options,
                                               "cutover": True}).fetchone()
            except psycopg.errors.ExternalRoutineInvocationException:
                raise StagedRotationError(
                    f"the cutover of {spec.table} stopped: a row written since staging holds a value the old key "
                    f"does not open ({spec.pk}={', '.join(chunk[:5])}{', ...' if len(chunk) > 5 else ''}); "
                    "nothing was swapped") from None
            if row and int(row[2]):
                raise StagedRotationError(f"the cutover of {spec.table}: {int(row[2])} values staged again do not "
                                          "decrypt with the new key to their plaintext digest")
    gone = conn.execute(sql.SQL("DELETE FROM {side} s WHERE NOT EXISTS (SELECT 1 FROM {t} t WHERE t.{pk} = "
                                "CAST(s.pk AS {kt}))").format(side=job.side_table, t=sql.Identifier(spec.table),
                                                              pk=sql.Identifier(spec.pk), kt=sql.SQL(key_type)))
    conn.commit()
    return gone.rowcount


def _swap(conn: psycopg.Connection, spec: TableSpec, job: StagedJob, key_type: str, job_id: int,
          guard: TriggerGuard, batch_size: int) -> int:
    """Pages of the side table, each swapped in with the job's checkpoint (reencrypt_range 0) in one transaction."""
    statement = _swap_statement(spec, job, key_type)
    swapped = 0
    while True:
        with conn.transaction():
            guard.begin(conn)
            for setting in (*DIGEST_SETTINGS, "SET LOCAL bytea_output = 'hex'"):
                conn.execute(setting)
            claimed = conn.execute("SELECT cursor FROM rotation_runbook.reencrypt_range WHERE job_id = %s AND "
                                   "range_no = 0 AND NOT done FOR UPDATE", (job_id,)).fetchone()
            if claimed is None:
                guard.end(conn)
                return swapped
            row = conn.execute(statement, {"after": claimed[0], "n": batch_size, "job": job_id}).fetchone()
            count, last, updated = (int(row[0]), row[1], int(row[2])) if row else (0, None, 0)
            conn.execute("UPDATE rotation_runbook.reencrypt_range SET cursor = COALESCE(%s, cursor), rows_done = "
                         "rows_done + %s, done = %s WHERE job_id = %s AND range_no = 0",
                         (last, updated, count < batch_size, job_id))
            guard.end(conn)
        swapped += updated
        if count < batch_size:
            return swapped


def prove(conn: psycopg.Connection, spec: TableSpec, job: StagedJob) -> tuple[int, int, int, list[str]]:
    """(rows in the table, rows holding exactly their verified staged ciphertexts, of which staged at cutover, the
    first rows that do not)."""
    enc = sql.SQL(", ").join(sql.SQL("t.{c}").format(c=sql.Identifier(c)) for c in spec.columns)
    staged = sql.SQL(", ").join(sql.SQL("s.{n}").format(n=sql.Identifier(f"n{i}")) for i in range(len(spec.columns)))
    row = conn.execute(sql.SQL(
        "SELECT count(*), count(*) FILTER (WHERE ok), count(*) FILTER (WHERE ok AND cut), "
        "(array_agg(k ORDER BY k) FILTER (WHERE NOT ok))[1:10] FROM (SELECT t.{pk}::text AS k, "
        "COALESCE(s.verified AND ROW({enc}) IS NOT DISTINCT FROM ROW({staged}), false) AS ok, s.at_cutover AS cut "
        "FROM {t} t LEFT JOIN {side} s ON s.pk = t.{pk}::text) x").format(
            pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table), side=job.side_table, enc=enc,
            staged=staged)).fetchone()
    conn.commit()
    if row is None:
        return 0, 0, 0, []
    return int(row[0]), int(row[1]), int(row[2]), [str(k) for k in row[3] or ()]


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

STAGED_CHECK = """
SELECT
    count(*) FILTER (WHERE s.{d} IS NOT NULL) AS values_before,
    count(*) FILTER (WHERE s.pk IS NOT NULL AND s.{d} IS NULL) AS nulls_before,
    count(*) FILTER (WHERE s.pk IS NOT NULL AND s.{d} IS NULL AND t.{c} IS NULL) AS nulls_kept,
    count(*) FILTER (WHERE s.{d} IS NOT NULL AND s.verified AND t.{c} = s.{n}) AS verified_new,
    0 AS readable_old
FROM {t} t LEFT JOIN {side} s ON s.pk = t.{pk}::text
"""
# Only the rows that fail are decrypted, to say why.
STAGED_FAILURES = """
SELECT why, count(*), (array_agg(k ORDER BY k))[1:10] FROM (
    SELECT t.{pk}::text AS k,
        CASE WHEN s.pk IS NULL THEN 'not staged'
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
VERIFY_SOURCE = ("per column of {table}: each value equals its verified staged ciphertext (decrypted with the new "
                 "key to its plaintext digest when staged); NULLs kept; every row known to the cutover and its "
                 "other-columns digest unchanged; the old key: the sweep, once the app is back")


def verify_staged(conn: psycopg.Connection, spec: TableSpec, job: StagedJob, job_id: int, old_key: Secret,
                  new_key: Secret) -> PopulationCheck:
    """After the swap: each value is its verified staged ciphertext (the decryption that proved it ran at staging; a
    ciphertext identical byte for byte decrypts identically), no decryption needed while the app is down. Rows and
    other columns as rotation.db_key.verify checks them."""
    columns: list[ColumnCheck] = []
    findings: list[Finding] = []
    ids = {"pk": sql.Identifier(spec.pk), "t": sql.Identifier(spec.table), "side": job.side_table}
    load_keys(conn, {"old": old_key, "new": new_key})
    with conn.transaction():
        for setting in DIGEST_SETTINGS:
            conn.execute(setting)
        for i, column in enumerate(spec.columns):
            names = {"c": sql.Identifier(column), "n": sql.Identifier(f"n{i}"), "d": sql.Identifier(f"d{i}"), **ids}
            counts = conn.execute(sql.SQL(STAGED_CHECK).format(**names)).fetchone() or (0, 0, 0, 0, 0)
            columns.append(ColumnCheck(column, *(int(n) for n in counts)))
            if not columns[-1].ok:
                findings += [Finding(spec.table, spec.pk, column, str(why), int(n), tuple(str(x) for x in pks or ()))
                             for why, n, pks in conn.execute(sql.SQL(STAGED_FAILURES).format(**names)).fetchall()]
        findings += row_findings(conn, spec, job_id)
        rows_after = _count(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(spec.table)))
        rows_before = _count(conn, "SELECT count(*) FROM rotation_runbook.plaintext_digest WHERE job_id = %s "
                                   "AND column_name = ''", (job_id,))
    conn.commit()
    return PopulationCheck(spec.table, rows_before, rows_after, tuple(columns), tuple(findings))


def _column_count(conn: psycopg.Connection, job: StagedJob) -> int:
    """How many encrypted columns the side table holds (n0/d0, n1/d1, ...)."""
    return _count(conn, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'rotation_runbook' "
                        "AND table_name = %s AND column_name ~ '^d[0-9]+$'", (f"staged_{job.stage_id}",))
