"""Benchmark: the staged rotation's cutover alone (what the app is down for, minus its own stop and start), at sizes
where seeding real pgcrypto values would take hours.

    python bench/cutover.py                       # 100,000 and 1,000,000 rows
    python bench/cutover.py --rows 2000000

The cutover decrypts nothing (every value's new ciphertext was computed and verified while the app ran), so its cost
does not depend on what the ciphertexts hold: here the CRM's clients table gets random bytes of the app's ciphertext
sizes, and a side table is staged from it exactly as rotation.db_key.staged stages (row version, digests of the
ciphertexts and of the other columns). `--changed N` rows are then changed by "the app" in other columns (their
version moves; the cutover takes their version and digest again). Timed: the cutover (stragglers, the one-statement
swap, the proof) and the verification that follows it (verify_staged), as the app's own non-superuser role (the owner
way of keeping the triggers quiet). bench/downtime.py times the whole procedure with real values.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from downtime import app_database  # noqa: E402  (bench/ is on sys.path when a benchmark runs as a script)

from rotation.core.config import default_config  # noqa: E402
from rotation.core.database import apply_runbook_schema, connect  # noqa: E402
from rotation.core.keys import generate_key  # noqa: E402
from rotation.core.secret import Secret, fingerprint  # noqa: E402
from rotation.db_key import staged  # noqa: E402
from rotation.db_key.reencrypt import DIGEST_SETTINGS, other_columns_digest, pgcrypto_specs, with_others  # noqa: E402
from staging.crm import apply_crm_schema  # noqa: E402
from staging.postgres import staging_server  # noqa: E402

SPEC = pgcrypto_specs(default_config())[0]
FILL = ("INSERT INTO crm_client_preferences (client_id, email_encrypted, phone_number_encrypted, full_name_encrypted, "
        "preferred_channels, timezone, language_preference) SELECT format('client-%%s', lpad(i::text, 8, '0')), "
        "gen_random_bytes(100), gen_random_bytes(90), gen_random_bytes(95), '[\"email\", \"sms\"]', "
        "'Europe/Berlin', 'en' FROM generate_series(1, %s) i")
STAGE = ("INSERT INTO {side} SELECT t.client_id, {src}, gen_random_bytes(100), gen_random_bytes(32), "
         "gen_random_bytes(90), gen_random_bytes(32), gen_random_bytes(95), gen_random_bytes(32), true, false, "
         "t.ctid, t.xmin, {other} FROM crm_client_preferences t")


def run(admin_dsn: str, rows: int, changed: int) -> dict[str, float]:
    with app_database(admin_dsn) as (_, _, dsn):
        old, new = generate_key(), generate_key()
        with connect(dsn) as conn:
            apply_crm_schema(conn)
            apply_runbook_schema(conn)
            conn.execute(FILL, (rows,))
            conn.commit()
            stage(conn, rows, old, new)
            conn.execute("UPDATE crm_client_preferences SET timezone = 'UTC' WHERE client_id IN (SELECT client_id "
                         "FROM crm_client_preferences ORDER BY random() LIMIT %s)", (changed,))
            conn.commit()
        started = time.monotonic()
        result = staged.cutover(dsn, SPEC, old, new)
        cutover_s = time.monotonic() - started
        with connect(dsn) as conn:
            started = time.monotonic()
            check = staged.verify_staged(conn, SPEC, staged.need_job(staged.find_staged(conn, SPEC, old, new), SPEC),
                                         result.job_id, old, new)
            verify_s = time.monotonic() - started
        if not (result.proven and check.ok and result.swapped == rows):
            raise SystemExit(f"the cutover did not hold: {result} {check.summary()} {check.failure_lines()}")
        return {"cutover": cutover_s, "verify": verify_s, **result.seconds}


def stage(conn: psycopg.Connection, rows: int, old: Secret, new: Secret) -> staged.StagedJob:
    """A finished staging as rotation.db_key.staged leaves it (side table, staged job, the cutover's job)."""
    spec = with_others(conn, SPEC)
    fps = (fingerprint(old), fingerprint(new))
    stage_id = conn.execute("INSERT INTO rotation_runbook.staged_job (table_name, old_key_fp, new_key_fp, "
                            "cipher_options, rows_total, phase) VALUES (%s, %s, %s, 'bench', %s, 'staged') "
                            "RETURNING stage_id", (SPEC.table, *fps, rows)).fetchone()
    job = staged.StagedJob(int(stage_id[0]) if stage_id else 0, SPEC.table, "staged", rows, rows, 0, None, "bench")
    conn.execute(sql.SQL("CREATE TABLE {} (pk text PRIMARY KEY, src bytea NOT NULL, n0 bytea, d0 bytea, n1 bytea, "
                         "d1 bytea, n2 bytea, d2 bytea, verified boolean NOT NULL, at_cutover boolean NOT NULL "
                         "DEFAULT false, {})").format(job.side_table, staged.VERSION_COLUMNS))
    for setting in DIGEST_SETTINGS:
        conn.execute(setting)
    conn.execute(sql.SQL(STAGE).format(side=job.side_table, src=staged._src(spec),
                                       other=other_columns_digest(spec, "t")))
    # the cutover's re-encryption job, as the staged rotation's preflight would have opened it on real values
    job_id = conn.execute("INSERT INTO rotation_runbook.reencrypt_job (table_name, pk_column, columns, old_key_fp, "
                          "new_key_fp, cipher_options, total_rows, kind) VALUES (%s, %s, %s, %s, %s, 'bench', %s, "
                          "'pgcrypto') RETURNING job_id", (SPEC.table, SPEC.pk, list(SPEC.columns), *fps, rows)
                          ).fetchone()
    conn.execute("INSERT INTO rotation_runbook.reencrypt_range (job_id, range_no) VALUES (%s, 0)",
                 (job_id[0] if job_id else 0,))
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    conn.autocommit = False
    return job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--changed", type=int, default=100, help="rows changed in other columns since staging")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"cutover benchmark, {os.cpu_count()} CPUs, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'rows':>10}{'cutover s':>11}{'stragglers':>12}{'swap':>8}{'proof':>8}{'verify s':>10}{'together':>10}")
    with staging_server() as server:
        for rows in args.rows:
            t = run(server.admin_dsn, rows, args.changed)
            print(f"{rows:>10,}{t['cutover']:>11.1f}{t['stragglers']:>12.1f}{t['swap']:>8.1f}{t['proof']:>8.1f}"
                  f"{t['verify']:>10.1f}{t['cutover'] + t['verify']:>10.1f}", flush=True)
    load = os.getloadavg()
    print(f"load average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
