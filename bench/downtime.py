"""Benchmark: what the users live through. The app's downtime and the whole procedure's wall time of a DB key rotation,
side by side, each on an identical copy of the same seeded CRM.

    python bench/downtime.py                    # 20,000 rows
    python bench/downtime.py --rows 100000
    python bench/downtime.py --rows 1000000 --cases b,c
    python bench/downtime.py --rows 1000000 --cases c --steady   # every rotation after the first

The CRM is seeded once as the app seeds it (encrypt_sensitive_data: pgcrypto's default, expensive S2K), with the app's
Fernet-encrypted provider credentials, as the app's own non-superuser role; with --steady, every value is as a rotation
by this suite leaves it (pgp_sym_encrypt with its cipher options, s2k-mode=1), so the cases time every later rotation.
Each case then runs on a fresh copy of that database (CREATE DATABASE ... TEMPLATE) with the app stand-in running on it:

(a) the runbook as written: stop the app, its UPDATE (rotate_encryption_key.sql; the keys reach its temp table through
    the session's key table, never as literals), its verification query (SELECT COUNT(*) ... WHERE email_encrypted IS
    NOT NULL), .env updated, start the app;
(b) the operator's `rotation db-key rotate --stop-the-world` end to end: the real command in its own process, through
    every step of the scheduled scenario, evidence and signing included;
(c) the staged rotation, `rotation db-key rotate` (staged is the default for scheduled rotations), when this tree has
    it: the same command, staging while the app runs, the app stopped only for the cutover.

Downtime is measured from outside, the way a user sees it: a poller asks the app's /health every 20 ms (0.5 s timeout);
downtime is the longest window from a last healthy answer to the next healthy one, the window the app's stop opens and
its start on the new key closes (the app is then proven on the new key: its probe's answer decrypts under the new key).
Any other unhealthy window (a slow answer while staging loads the machine) is counted beside it, not merged into it.
Peak RSS: the largest of this process and the rotation command (getrusage of the waited-for children), and, separately,
the peak of the PostgreSQL server's private memory (the sum of RssAnon over the postmaster and its backends, sampled
every 100 ms; shared buffers not counted). pgcrypto's own ceiling closes the output: rows/s of a pure decrypt + encrypt
SELECT on one core, for the values as seeded (the first rotation) and for values under s2k-mode=1 (every later one).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reencrypt import RUNBOOK_SQL  # noqa: E402  (bench/ is on sys.path when a benchmark runs as a script)

from rotation.core import app_control, envfile  # noqa: E402
from rotation.core.config import default_config  # noqa: E402
from rotation.core.database import apply_runbook_schema, connect, key_ref  # noqa: E402
from rotation.core.keys import generate_key  # noqa: E402
from rotation.core.secret import Secret  # noqa: E402
from rotation.db_key.reencrypt import DEFAULT_CIPHER_OPTIONS, pgcrypto_specs  # noqa: E402
from staging.crm import apply_crm_schema  # noqa: E402
from staging.postgres import free_port, staging_server  # noqa: E402
from staging.seed import seed_api_credentials, seed_clients  # noqa: E402
from staging.world import api_credentials, probe_config, remove_key_files, stand_in_commands, write_env  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
CONFIG = default_config()
SPEC = pgcrypto_specs(CONFIG)[0]
ENV_NAME = CONFIG.credential("db_encryption_key").env

RUNBOOK_UPDATE = RUNBOOK_SQL  # rotate_encryption_key.sql's UPDATE, as bench/reencrypt.py times it
RUNBOOK_VERIFY = "SELECT COUNT(*) FROM crm_client_preferences WHERE email_encrypted IS NOT NULL"


@dataclass
class Outcome:
    case: str
    downtime_s: float | None = None
    total_s: float | None = None
    client_rss_mb: float | None = None
    server_rss_mb: float | None = None
    ok: bool = False
    note: str = ""
    detail: dict[str, float] = field(default_factory=dict)


# --- the seeded CRM and its copies ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Seeded:
    admin_dsn: str
    role: str
    template: str
    key: Secret


@contextlib.contextmanager
def app_database(admin_dsn: str) -> Iterator[tuple[str, str, str]]:
    """A role like the app's (not a superuser) and a database it owns: (role, database, its DSN); dropped afterwards."""
    role, name = f"crm_app_{secrets.token_hex(4)}", f"rotation_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
    try:
        yield role, name, dsn_of(admin_dsn, name, role)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@contextlib.contextmanager
def seeded_template(admin_dsn: str, rows: int, workers: int, steady: bool = False) -> Iterator[Seeded]:
    """The app's role and a database it owns, seeded once: the template every case copies. With `steady`, every value
    is as a rotation by this suite leaves it (its cipher options), not as the app writes it."""
    with app_database(admin_dsn) as (role, name, dsn):
        key = generate_key()
        with connect(dsn) as conn:
            apply_crm_schema(conn)
            apply_runbook_schema(conn)
            conn.commit()
        started = time.monotonic()
        seed_clients(dsn, key, rows, workers=workers, chunk=5000,
                     cipher_options=DEFAULT_CIPHER_OPTIONS if steady else None)
        seed_api_credentials(dsn, key, api_credentials(CONFIG, {}))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        how = f"pgp_sym_encrypt(..., '{DEFAULT_CIPHER_OPTIONS}') (steady state)" if steady else "encrypt_sensitive_data"
        print(f"seeded {rows:,} rows with {how} in {time.monotonic() - started:.1f}s "
              f"({os.cpu_count()} CPUs)", flush=True)
        yield Seeded(admin_dsn, role, name, key)


def dsn_of(admin_dsn: str, dbname: str, role: str) -> str:
    params = conninfo_to_dict(admin_dsn)
    params.pop("password", None)
    return make_conninfo(**{**params, "dbname": dbname, "user": role})  # type: ignore[arg-type]


@dataclass(frozen=True)
class World:
    dsn: str
    env_file: Path
    app: app_control.AppCommands


@contextlib.contextmanager
def copy_world(seeded: Seeded, workdir: Path) -> Iterator[World]:
    """A copy of the seeded CRM owned by the app's role, its .env (0600) and the app stand-in running on it."""
    name = f"rotation_bench_{secrets.token_hex(4)}"
    with psycopg.connect(seeded.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(seeded.template), sql.Identifier(seeded.role)))
    app_dir = workdir / name
    app_dir.mkdir(mode=0o700, parents=True)
    dsn = dsn_of(seeded.admin_dsn, name, seeded.role)
    env_file = app_dir / ".env"
    write_env(env_file, {"DATABASE_URL": dsn, ENV_NAME: seeded.key})
    app = stand_in_commands(env_file, free_port())
    try:
        app_control.run(app.start)
        app_control.wait_for_health(app.health_url, timeout_s=15)
        yield World(dsn, env_file, app)
    finally:
        with contextlib.suppress(Exception):
            app_control.run(app.stop)
        remove_key_files(app_dir)
        with psycopg.connect(seeded.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- measuring --------------------------------------------------------------------------------------------------------

class HealthWatch:
    """Polls /health every 20 ms and keeps every window of unhealthy answers (from the last healthy answer before it
    to the first healthy one after it). The downtime is the longest window, the one the app's stop opens; any other
    window (an answer slower than the 0.5 s timeout while staging loads the machine, say) is reported beside it, not
    merged into it. Within each window it also keeps when the app refused or failed (connection refused, not 200)
    and when it was only slow (no answer within the timeout: the app answered later, to a poller that had hung up),
    so that a window can be read as down, or as slow around a stop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.windows: list[tuple[float, float, float | None, float | None]] = []  # start, end, first/last refusal
        self._open: float | None = None  # the last healthy answer before the current unhealthy run
        self._refused: tuple[float, float] | None = None  # first and last refusal of the current unhealthy run
        self._last_ok: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            asked = time.monotonic()
            try:
                ok, slow = session.get(self.url, timeout=0.5).status_code == 200, False
            except requests.Timeout:
                ok, slow = False, True
            except requests.RequestException:
                ok, slow = False, False
            now = time.monotonic()
            if ok:
                if self._open is not None:
                    first, last = self._refused or (None, None)
                    self.windows.append((self._open, now, first, last))
                    self._open, self._refused = None, None
                self._last_ok = now
            else:
                if self._open is None:
                    self._open = self._last_ok if self._last_ok is not None else asked
                if not slow:
                    self._refused = (self._refused[0] if self._refused else asked, asked)
            self._stop.wait(0.02)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def recovered(self) -> bool:
        return bool(self.windows) and self._open is None

    @property
    def downtime_s(self) -> float | None:
        return max((end - start for start, end, _, _ in self.windows), default=None)

    def other_windows(self) -> str:
        """How the downtime window reads (refused or failing, and slow before and after), and the unhealthy windows
        besides it: how many, and the longest."""
        if not self.windows:
            return ""
        start, end, first, last = max(self.windows, key=lambda w: w[1] - w[0])
        shape = (f"; of the downtime: slow {first - start:.1f}s, refused/failing {last - first:.1f}s, slow "
                 f"{end - last:.1f}s" if first is not None and last is not None else "; no refusal, only slow answers")
        rest = sorted((e - s for s, e, _, _ in self.windows), reverse=True)[1:]
        return shape + (f"; {len(rest)} other unhealthy window(s), longest {rest[0]:.1f}s" if rest else "")


class ServerMemory:
    """Peak of the PostgreSQL server's private memory: RssAnon summed over the postmaster and its children."""

    def __init__(self, admin_dsn: str) -> None:
        with psycopg.connect(admin_dsn) as conn:
            row = conn.execute("SELECT pg_read_file('postmaster.pid')").fetchone()
        self.postmaster = int(str(row[0]).splitlines()[0]) if row else 0
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pids(self) -> list[int]:
        pids = [self.postmaster]
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = Path(entry.path, "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == self.postmaster:
                        pids.append(int(entry.name))
        return pids

    @staticmethod
    def _anon_kb(pid: int) -> int:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, sum(self._anon_kb(p) for p in self._pids()))
            self._stop.wait(0.1)

    def __enter__(self) -> ServerMemory:
        self.peak_kb = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def self_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measured(case: str, world: World, server: ServerMemory, body: Callable[[World], tuple[bool, str, int]]
             ) -> Outcome:
    """Run one case under the health watch and the memory sampler."""
    started = time.monotonic()
    with HealthWatch(world.app.health_url) as watch, server:
        time.sleep(0.1)  # the watch has seen the app healthy before anything stops it
        ok, note, child_kb = body(world)
        deadline = time.monotonic() + 30
        while not watch.recovered and time.monotonic() < deadline:
            time.sleep(0.02)
    total = time.monotonic() - started - 0.1
    proven = app_on_key(world)
    note += watch.other_windows()
    return Outcome(case, watch.downtime_s, total, max(self_rss_mb(), child_kb / 1024), server.peak_kb / 1024,
                   ok and proven, note if proven else (note + "; the app is not proven on the new key").strip("; "))


def app_on_key(world: World) -> bool:
    """The app answers its probe with a value that the key now in .env decrypts (the same proof the command uses)."""
    key = envfile.get_secret(world.env_file, ENV_NAME)
    with connect(world.dsn, keys={"k": key}) as conn:
        row = conn.execute(f"SELECT client_id, rotation_runbook.try_decrypt(email_encrypted, {key_ref('k')}) "
                           "FROM crm_client_preferences WHERE email_encrypted IS NOT NULL ORDER BY client_id "
                           "LIMIT 1").fetchone()
    if not row or row[1] is None or not world.app.probe_url:
        return False
    answer = requests.get(world.app.probe_url.replace("{id}", str(row[0])), timeout=5)
    return answer.status_code == 200 and answer.json().get(world.app.probe_field) == row[1]


# --- the cases --------------------------------------------------------------------------------------------------------

def runbook_case(world: World) -> tuple[bool, str, int]:
    """(a): Step 3 of the runbook, in its order: stop, .env, the migration script, its verification query, start."""
    old = envfile.get_secret(world.env_file, ENV_NAME)
    new = generate_key()
    app_control.run(world.app.stop)
    envfile.set_value(world.env_file, ENV_NAME, new)
    with connect(world.dsn, keys={"old": old, "new": new}) as conn:
        conn.execute("CREATE TEMP TABLE temp_encryption_keys (old_key TEXT, new_key TEXT)")
        conn.execute(f"INSERT INTO temp_encryption_keys VALUES ({key_ref('old')}, {key_ref('new')})")
        updated = conn.execute(RUNBOOK_UPDATE).rowcount
        conn.execute("DROP TABLE temp_encryption_keys")
        conn.commit()
        counted = conn.execute(RUNBOOK_VERIFY).fetchone()
    app_control.run(world.app.start)
    app_control.wait_for_health(world.app.health_url, timeout_s=30)
    return True, f"{updated:,} rows updated, verification count {counted[0] if counted else '?'}", 0


def command_case(extra: list[str], workers: int, reports: Path) -> Callable[[World], tuple[bool, str, int]]:
    """(b) and (c): the operator's command, as an operator runs it, in its own process."""

    def run(world: World) -> tuple[bool, str, int]:
        config = probe_config(world.env_file.parent / "rotation.toml", world.app)
        command = [sys.executable, "-m", "rotation", "db-key", "rotate", f"--config={config}", f"--dsn={world.dsn}",
                   f"--env-file={world.env_file}", f"--app-start={world.app.start}",
                   f"--app-stop={world.app.stop}", f"--app-restart={world.app.restart}",
                   f"--app-reload={world.app.reload}", f"--health-url={world.app.health_url}",
                   f"--workers={workers}", "--operator=bench", "--change-id=CHG-BENCH", "--approver=bench",
                   f"--reports-dir={reports}", "--allow-staging-endpoints", "--confirm-live", *extra]
        env = {**os.environ, "PYTHONPATH": str(PROJECT), "PYTEST_ADDOPTS": "-q -p no:cacheprovider"}
        with open(reports / f"command-{time.monotonic_ns()}.log", "w") as log:
            proc = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode == 0, f"exit {proc.returncode} (log: {log.name})", int(usage.ru_maxrss)

    return run


def has_staged() -> bool:
    return (PROJECT / "rotation" / "db_key" / "staged.py").exists()


# --- pgcrypto's ceiling -----------------------------------------------------------------------------------------------

CEILING = """
SELECT count(pgp_sym_encrypt(pgp_sym_decrypt(email_encrypted, {k}), {n}, 'cipher-algo=aes256, s2k-mode=1')),
       count(pgp_sym_encrypt(pgp_sym_decrypt(phone_number_encrypted, {k}), {n}, 'cipher-algo=aes256, s2k-mode=1')),
       count(pgp_sym_encrypt(pgp_sym_decrypt(full_name_encrypted, {k}), {n}, 'cipher-algo=aes256, s2k-mode=1'))
FROM (SELECT * FROM crm_client_preferences ORDER BY client_id LIMIT %(rows)s) t
"""


def ceiling(dsn: str, key: Secret, rows: int) -> float:
    """Rows/s of pgcrypto alone (decrypt + encrypt of every value of `rows` rows, nothing written) on one core, best
    of three."""
    with connect(dsn, keys={"k": key, "n": generate_key()}) as conn:
        conn.execute("SET max_parallel_workers_per_gather = 0")
        query = CEILING.format(k=key_ref("k"), n=key_ref("n"))
        best = float("inf")
        for _ in range(3):
            started = time.monotonic()
            conn.execute(query, {"rows": rows})
            best = min(best, time.monotonic() - started)
    return rows / best


def fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0] or 0)
    return format(value, spec) if value is not None else "-".rjust(width)


def signing_key(workdir: Path) -> None:
    """The run folders of (b) and (c) are signed as a live run's are: with a key of this benchmark's own."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = workdir / "signing-key.pem"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.environ["ROTATION_SIGNING_KEY"] = str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--cases", default="a,b,c", help="which of a, b, c to run (default: all)")
    parser.add_argument("--staged-args", default="", help="what (c) adds to the command (e.g. --max-rate=5000)")
    parser.add_argument("--steady", action="store_true",
                        help="seed every value as a rotation by this suite leaves it (the steady state: every rotation "
                             "after the first), not as the app writes it")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    load = os.getloadavg()
    print(f"downtime benchmark, {args.rows:,} rows{', steady state' if args.steady else ''}, {args.workers} workers, "
          "load average before "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    outcomes: list[Outcome] = []
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(staging_server())
        workdir = PROJECT / "reports" / "bench-downtime"
        workdir.mkdir(parents=True, exist_ok=True)
        signing_key(workdir)
        seeded = stack.enter_context(seeded_template(server.admin_dsn, args.rows, args.workers, args.steady))
        memory = ServerMemory(server.admin_dsn)
        plan: list[tuple[str, Callable[[World], tuple[bool, str, int]] | None]] = [
            ("(a) runbook SQL as written", runbook_case if "a" in cases else None),
            ("(b) db-key rotate, stop-the-world", (command_case(["--stop-the-world"], args.workers, workdir)
                                                   if "b" in cases else None)),
            ("(c) staged rotation", (command_case(args.staged_args.split(), args.workers, workdir)
                                     if "c" in cases and has_staged() else None)),
        ]
        for name, body in plan:
            if body is None:
                outcomes.append(Outcome(name, note="not run" if name[1] in cases else "not selected"))
                if name.startswith("(c)") and "c" in cases and not has_staged():
                    outcomes[-1].note = "not built in this tree"
                continue
            with copy_world(seeded, workdir) as world:
                outcome = measured(name, world, memory, body)
            outcomes.append(outcome)
            print(f"{name}: done in {fmt(outcome.total_s, '.1f')}s, load {os.getloadavg()[0]:.2f}", flush=True)
        with copy_world(seeded, workdir) as world:
            first = ceiling(world.dsn, seeded.key, min(args.rows, 2000))
            steady_key = generate_key()
            with connect(world.dsn, keys={"k": seeded.key, "n": steady_key}) as conn:
                conn.execute(f"UPDATE crm_client_preferences SET email_encrypted = pgp_sym_encrypt(pgp_sym_decrypt("
                             f"email_encrypted, {key_ref('k')}), {key_ref('n')}, 'cipher-algo=aes256, s2k-mode=1'), "
                             f"phone_number_encrypted = pgp_sym_encrypt(pgp_sym_decrypt(phone_number_encrypted, "
                             f"{key_ref('k')}), {key_ref('n')}, 'cipher-algo=aes256, s2k-mode=1'), full_name_encrypted "
                             f"= pgp_sym_encrypt(pgp_sym_decrypt(full_name_encrypted, {key_ref('k')}), {key_ref('n')}, "
                             "'cipher-algo=aes256, s2k-mode=1') WHERE client_id IN (SELECT client_id FROM "
                             "crm_client_preferences ORDER BY client_id LIMIT %(rows)s)",
                             {"rows": min(args.rows, 20_000)})
                conn.commit()
            steady = ceiling(world.dsn, steady_key, min(args.rows, 20_000))
    report(args, outcomes, first, steady)
    return 0 if all(o.ok or o.total_s is None for o in outcomes) else 1


def report(args: argparse.Namespace, outcomes: list[Outcome], first: float, steady: float) -> None:
    load = os.getloadavg()
    print()
    print(f"{args.rows:,} rows, {args.workers} workers, {os.cpu_count()} CPUs, load average after "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'case':32}{'downtime s':>12}{'total s':>10}{'client RSS MB':>15}{'server MB':>11}  result")
    runbook = next((o for o in outcomes if o.case.startswith("(a)") and o.total_s), None)
    for o in outcomes:
        vs = (f"  downtime {runbook.downtime_s / o.downtime_s:.1f}x below (a), total "
              f"{(runbook.total_s or 0) / (o.total_s or 1):.2f}x"
              if runbook and runbook.downtime_s and o.downtime_s and o is not runbook else "")
        result = ("ok" if o.ok else "FAILED") if o.total_s is not None else ""
        print(f"{o.case:32}{fmt(o.downtime_s, '12.1f')}{fmt(o.total_s, '10.1f')}{fmt(o.client_rss_mb, '15.0f')}"
              f"{fmt(o.server_rss_mb, '11.0f')}  {result} {o.note}{vs}")
    cores = os.cpu_count() or 1
    seeded = "values as seeded, already s2k-mode=1" if args.steady else "first rotation, values as the app wrote them"
    print(f"pgcrypto alone, one core (decrypt + encrypt, nothing written): {seeded} {first:,.0f} rows/s; steady "
          f"state (s2k-mode=1 values) {steady:,.0f} rows/s, x{cores} cores = {steady * cores:,.0f} rows/s")


if __name__ == "__main__":
    sys.exit(main())
