"""Benchmark: the runbook's single-UPDATE re-encryption against rotation-runbook's engine, on one cluster.

    python bench/reencrypt.py                 # 20,000 rows
    python bench/reencrypt.py --rows 100000
    python bench/reencrypt.py --rows 1000000 --skip-runbook-sql   # the runbook's SQL would take ~15 minutes here

Seeds N clients with the app's own encrypt_sensitive_data (pgcrypto defaults), then times
(a) the runbook's rotate_encryption_key.sql (one UPDATE over the table, keys from a temp table),
(b) our engine on the data (a) wrote (the first rotation away from the app's defaults), and
(c) our engine again on the data (b) wrote (steady state: every later rotation).
Prints rows/s, the ratios, and the peak RSS of this process. Keys reach the server only through the session's key
table (COPY FROM STDIN), as everywhere in the suite.

    python bench/reencrypt.py --baseline 4df037d   # the same benchmark of another commit, side by side, alternating

With --baseline, the benchmark of that commit (extracted with `git archive`) and this one run in turn, twice each, on
fresh databases of the same cluster type, and a table of their rows/s closes the output.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rotation.core.config import default_config  # noqa: E402
from rotation.core.database import apply_runbook_schema, connect, key_ref, on_connections  # noqa: E402
from rotation.core.keys import generate_key  # noqa: E402
from rotation.core.secret import Secret  # noqa: E402
from rotation.db_key.reencrypt import pgcrypto_specs, reencrypt  # noqa: E402
from staging.crm import apply_crm_schema  # noqa: E402
from staging.postgres import staging_database  # noqa: E402
from staging.seed import seed_clients  # noqa: E402

RUNBOOK_SQL = """
UPDATE crm_client_preferences
SET
    email_encrypted = encrypt_sensitive_data(
        decrypt_sensitive_data(email_encrypted, (SELECT old_key FROM temp_encryption_keys)),
        (SELECT new_key FROM temp_encryption_keys)
    ),
    phone_number_encrypted = encrypt_sensitive_data(
        decrypt_sensitive_data(phone_number_encrypted, (SELECT old_key FROM temp_encryption_keys)),
        (SELECT new_key FROM temp_encryption_keys)
    ),
    full_name_encrypted = encrypt_sensitive_data(
        decrypt_sensitive_data(full_name_encrypted, (SELECT old_key FROM temp_encryption_keys)),
        (SELECT new_key FROM temp_encryption_keys)
    )
WHERE email_encrypted IS NOT NULL
   OR phone_number_encrypted IS NOT NULL
   OR full_name_encrypted IS NOT NULL
"""


SPEC = pgcrypto_specs(default_config())[0]  # the CRM's client PII, from the encrypted-data inventory


def runbook_rotation(dsn: str, old: Secret, new: Secret) -> float:
    """The runbook's script, except that the keys reach its temp table through the session's key table (COPY), not
    as literals."""
    started = time.monotonic()
    with connect(dsn, keys={"old": old, "new": new}) as conn:
        conn.execute("CREATE TEMP TABLE temp_encryption_keys (old_key TEXT, new_key TEXT)")
        conn.execute(f"INSERT INTO temp_encryption_keys VALUES ({key_ref('old')}, {key_ref('new')})")
        conn.execute(RUNBOOK_SQL)
        conn.execute("DROP TABLE temp_encryption_keys")
        conn.commit()
    return time.monotonic() - started


K, N = key_ref("k"), key_ref("n")
CRYPTO_ONLY = f"""
SELECT count(pgp_sym_encrypt(pgp_sym_decrypt(email_encrypted, {K}), {N}, 'cipher-algo=aes256, s2k-mode=1')),
       count(pgp_sym_encrypt(pgp_sym_decrypt(phone_number_encrypted, {K}), {N}, 'cipher-algo=aes256, s2k-mode=1')),
       count(pgp_sym_encrypt(pgp_sym_decrypt(full_name_encrypted, {K}), {N}, 'cipher-algo=aes256, s2k-mode=1'))
FROM crm_client_preferences
"""
SLICE = " WHERE mod(hashtext(client_id::text)::bigint + 2147483648, %(parts)s) = %(part)s"


def crypto_floor(dsn: str, key: Secret, connections: int = 1) -> float:
    """Rows/s of pgcrypto alone (decrypt + encrypt of every value, nothing written), best of three, on one core or on
    `connections` connections at once, each with its slice of the rows: the ceiling for any in-database re-encryption
    of values already written with s2k-mode=1. Measured, not one core's rate times the cores: two vCPUs seldom give
    twice one."""
    keys = {"k": key, "n": generate_key()}
    with connect(dsn, keys=keys) as conn:
        rows = conn.execute("SELECT count(*) FROM crm_client_preferences").fetchone()[0]

    def slice_of(c: psycopg.Connection, part: int) -> None:
        c.execute("SET max_parallel_workers_per_gather = 0")  # one core each: a parallel scan would hide the ceiling
        c.execute(CRYPTO_ONLY + SLICE, {"parts": connections, "part": part})

    best = float("inf")
    for _ in range(3):  # best of three: this figure is a ceiling, and a shared VM only ever makes it lower
        started = time.monotonic()
        on_connections(dsn, keys, connections, list(range(connections)), slice_of)
        best = min(best, time.monotonic() - started)
    return rows / best


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--dsn", default=os.environ.get("ROTATION_DSN"),
                        help="a server to create the scratch database on (default: a private cluster)")
    parser.add_argument("--skip-runbook-sql", action="store_true", help="skip (a); (b) then starts from seeded data")
    parser.add_argument("--baseline", metavar="REV", help="also run the benchmark of git revision REV, alternating")
    parser.add_argument("--rounds", type=int, default=2, help="with --baseline: runs of each (default 2)")
    args = parser.parse_args()
    if args.baseline:
        return side_by_side(args)

    keys = [generate_key() for _ in range(4)]
    with staging_database(args.dsn) as db:
        with connect(db.dsn) as conn:
            apply_crm_schema(conn)
            apply_runbook_schema(conn)
            conn.commit()
        t = time.monotonic()
        seed_clients(db.dsn, keys[0], args.rows, workers=args.workers, chunk=5000)
        print(f"seeded {args.rows:,} rows with encrypt_sensitive_data in {time.monotonic() - t:.1f}s ({db.backend}, "
              f"{os.cpu_count()} CPUs)")
        baseline = None
        if not args.skip_runbook_sql:
            seconds = runbook_rotation(db.dsn, keys[0], keys[1])
            baseline = args.rows / seconds
            print(f"(a) runbook SQL:             {seconds:8.2f}s  {baseline:10,.0f} rows/s")
        else:
            keys[1] = keys[0]
        first = reencrypt(db.dsn, keys[1], keys[2], spec=SPEC, workers=args.workers)
        rate1 = args.rows / first.seconds
        print(f"(b) engine, first rotation:  {first.seconds:8.2f}s  {rate1:10,.0f} rows/s"
              + (f"  {rate1 / baseline:5.1f}x the runbook's SQL" if baseline else ""))
        steady = reencrypt(db.dsn, keys[2], keys[3], spec=SPEC, workers=args.workers)
        rate2 = args.rows / steady.seconds
        print(f"(c) engine, steady state:    {steady.seconds:8.2f}s  {rate2:10,.0f} rows/s"
              + (f"  {rate2 / baseline:5.1f}x the runbook's SQL" if baseline else ""))
        floor = crypto_floor(db.dsn, keys[3])
        cores = os.cpu_count() or 1
        measured = crypto_floor(db.dsn, keys[3], connections=args.workers)
        print(f"    pgcrypto alone, one core: {floor:10,.0f} rows/s; x{cores} cores = {floor * cores:,.0f} "
              "rows/s is the ceiling for (c)"
              + (f" ({floor * cores / baseline:.1f}x the runbook's SQL)" if baseline else ""))
        print(f"    pgcrypto alone on {args.workers} connections at once (measured): {measured:,.0f} rows/s "
              f"({measured / floor:.2f}x one core); (c) is {rate2 / (floor * cores):.0%} of the first ceiling, "
              f"{rate2 / measured:.0%} of the measured one")
        print(f"peak RSS of this process: {peak_rss_mb():.0f} MB")
    return 0


FIGURE = re.compile(r"^\((?P<case>[abc])\) .*?(?P<rate>[\d,]+) rows/s", re.M)


def side_by_side(args: argparse.Namespace) -> int:
    """This benchmark and the one of git revision `args.baseline`, in turn, on the same machine, same arguments."""
    root = Path(__file__).resolve().parents[1]
    forwarded = [f"--rows={args.rows}", f"--workers={args.workers}", *(["--skip-runbook-sql"]
                                                                        if args.skip_runbook_sql else [])]
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        archive = Path(tmp) / "baseline.tar"
        subprocess.run(["git", "-C", str(root), "archive", "--format=tar", "-o", str(archive), args.baseline],
                       check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp) / "tree", filter="data")
        trees = {f"baseline {args.baseline}": Path(tmp) / "tree", "this tree": root}
        figures: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for round_no in range(args.rounds):
            for name, tree in trees.items():
                print(f"--- round {round_no + 1}: {name} ---", flush=True)
                env = {**os.environ, "PYTHONPATH": str(tree)}
                done = subprocess.run([sys.executable, str(tree / "bench" / "reencrypt.py"), *forwarded], cwd=tree,
                                      env=env, capture_output=True, text=True, check=False)
                print(done.stdout + done.stderr, flush=True)
                figures[name].append({m["case"]: float(m["rate"].replace(",", ""))
                                      for m in FIGURE.finditer(done.stdout)})
    print(f"rows/s, {args.rows:,} rows, {args.rounds} rounds each (best of the rounds):")
    print(f"{'':28}" + "".join(f"{c:>14}" for c in ("(a) runbook", "(b) first", "(c) steady")))
    for name, runs in figures.items():
        best = {c: max((r.get(c, 0.0) for r in runs), default=0.0) for c in "abc"}
        print(f"{name:28}" + "".join(f"{best[c]:>14,.0f}" for c in "abc"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
