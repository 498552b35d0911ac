"""What the operator sees during a long live run: `rotation db-key rotate ... --confirm-live --allow-staging-endpoints`
against a staging CRM of --rows clients, run under a pseudo-terminal (`script -q -c`), each line the terminal shows
stamped with the time it arrived (UTC and seconds since the command started).

    python bench/progress_lines.py                      # 100,000 rows, staged (the default mode)
    python bench/progress_lines.py --rows 20000 -- --stop-the-world
    python bench/progress_lines.py -- --progress=off    # the quiet option: step lines only

Arguments after `--` go to the command. The CRM is seeded as the app's own non-superuser role, the app stand-in runs on
it (started and stopped by its commands, proven on the new key by its pidfile); the evidence is signed with a key made
for this run. The point is the lines' timing: progress lines (`..`) with done/total, rate and ETA arrive while a step
runs, before its `ok` line. Everything is torn down afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rotation.core import app_control  # noqa: E402
from rotation.core.config import default_config  # noqa: E402
from rotation.core.database import apply_runbook_schema  # noqa: E402
from rotation.core.keys import generate_key  # noqa: E402
from rotation.core.secret import Secret  # noqa: E402
from staging.crm import apply_crm_schema  # noqa: E402
from staging.postgres import app_database, free_port, staging_server  # noqa: E402
from staging.seed import seed_clients  # noqa: E402
from staging.world import remove_key_files, stand_in_commands, write_env  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
ENV_NAME = default_config().credential("db_encryption_key").env


def command(dsn: str, env_file: Path, app: app_control.AppCommands, reports: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "rotation", "db-key", "rotate", f"--dsn={dsn}", f"--env-file={env_file}",
            f"--app-start={app.start}", f"--app-stop={app.stop}", f"--app-restart={app.restart}",
            f"--app-reload={app.reload}", f"--health-url={app.health_url}", "--workers=2",
            "--operator=bench-operator", "--change-id=BENCH-PROGRESS", "--requester=bench", "--approver=bench-approver",
            f"--reports-dir={reports}", "--allow-staging-endpoints", "--confirm-live", *extra]


def signing_key(folder: Path) -> Path:
    path = folder / "signing-key.pem"
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def stamped(argv: list[str], env: dict[str, str]) -> int:
    """Run argv under a pseudo-terminal; print each line as it arrives, with its time."""
    started = time.monotonic()
    proc = subprocess.Popen(["script", "-q", "-c", " ".join(shlex.quote(a) for a in argv), "/dev/null"],
                            cwd=PROJECT, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip("\r\n")
        print(f"{dt.datetime.now(dt.UTC):%H:%M:%S} +{time.monotonic() - started:7.1f}s | {line}", flush=True)
    return proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("extra", nargs="*", help="arguments for `rotation db-key rotate` (after --)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="progress-lines-"))
    app_dir = work / "app"
    app_dir.mkdir(mode=0o700)
    with staging_server(None) as server, app_database(server.admin_dsn) as dsn:
        key = generate_key()
        with psycopg.connect(dsn) as conn:
            apply_crm_schema(conn)
            apply_runbook_schema(conn)
        seeding = time.monotonic()
        seed_clients(dsn, key, args.rows)
        print(f"seeded {args.rows:,} clients in {time.monotonic() - seeding:.0f}s", flush=True)
        env_file = app_dir / ".env"
        write_env(env_file, {"DATABASE_URL": dsn, ENV_NAME: Secret(key)})
        app = stand_in_commands(env_file, free_port())
        app_control.run(app.start)
        try:
            app_control.wait_for_health(app.health_url, timeout_s=15)
            env = {**os.environ, "PYTHONPATH": str(PROJECT), "ROTATION_SIGNING_KEY": str(signing_key(work))}
            code = stamped(command(dsn, env_file, app, work / "reports", args.extra), env)
        finally:
            app_control.run(app.stop)
            remove_key_files(app_dir)
    print(f"exit {code}", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
