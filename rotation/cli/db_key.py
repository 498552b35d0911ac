"""`rotation db-key rotate|resume`: runbook section 1 from the command line, resumable after a crash at any step."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from rotation.cli.parsing import SubParsers
from rotation.core import app_control, envfile, state
from rotation.core.secret import fingerprint
from rotation.db_key import procedure as db_key
from rotation.db_key.reencrypt import Progress


def register(sub: SubParsers) -> None:
    p = sub.add_parser("db-key", help="rotate DB_ENCRYPTION_KEY and re-encrypt all client PII (runbook section 1)")
    p.add_argument("action", choices=("rotate", "resume"),
                   help="rotate: start a new rotation; resume: finish one a crash interrupted")
    p.add_argument("--dsn", default=os.environ.get("ROTATION_DSN"), help="the CRM database (or ROTATION_DSN)")
    p.add_argument("--env-file", type=Path, required=True, help="the app's .env")
    p.add_argument("--operator", default=None, help="rotated_by (default: the OS user)")
    p.add_argument("--reason", default="Scheduled 90-day rotation")
    p.add_argument("--workers", type=int, default=None, help="parallel workers (default: CPU count)")
    p.add_argument("--abandon-pending", action="store_true",
                   help="start over a stale PENDING rotation whose key never reached .env")
    p.add_argument("--app-stop", default=None, help="command to stop the app before re-encryption")
    p.add_argument("--app-start", default=None, help="command to start the app afterwards")
    p.set_defaults(func=run)


def say(message: str) -> None:
    print(f"[db-key] {message}", file=sys.stderr, flush=True)


def progress(p: Progress) -> None:
    print(f"\r[db-key] {p.line()}   ", end="", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if not args.dsn:
        say("no database: pass --dsn or set ROTATION_DSN")
        return 2
    operator = args.operator or getpass.getuser()
    try:
        keys = _resume(args) if args.action == "resume" else _begin(args)
        if args.app_stop:
            app_control.run(args.app_stop)
        job_id, digests = db_key.prepare(args.dsn, keys)
        say(f"job {job_id}: {digests:,} plaintext digests recorded")
        result = db_key.reencrypt_all(args.dsn, keys, workers=args.workers, on_progress=progress)
        print(file=sys.stderr)
        check = db_key.verify_population(args.dsn, keys, job_id, args.env_file)
        say(check.summary())
        if not check.ok:
            say("verification FAILED: " + "; ".join(check.failure_lines()))
            return 1
        if db_key.find_logged(args.dsn, keys) is None:
            db_key.log(args.dsn, keys, args.env_file, rotated_by=operator, reason=args.reason)
        else:
            state.advance(args.env_file, db_key.CREDENTIAL, "finish")
        if args.app_start:
            app_control.run(args.app_start)
        say(f"done: {result.rows_total:,} rows, DB_ENCRYPTION_KEY is now {fingerprint(keys.new)}")
        return 0
    except (RuntimeError, ValueError, OSError) as exc:  # our errors name what is wrong and never carry a key
        say(f"{type(exc).__name__}: {exc}")
        return 2


def _begin(args: argparse.Namespace) -> db_key.Keys:
    backup = envfile.backup(args.env_file)
    say(f"backed up .env to {backup.name}")
    keys = db_key.begin(args.env_file, backup, reason=args.reason, abandon=args.abandon_pending)
    db_key.update_env(args.env_file, keys)
    say(f"new key {fingerprint(keys.new)} written to {args.env_file.name}; old key {fingerprint(keys.old)} in backup")
    return keys


def _resume(args: argparse.Namespace) -> db_key.Keys:
    keys = db_key.recover_keys(args.env_file)
    say(f"resuming rotation {fingerprint(keys.old)} -> {fingerprint(keys.new)}")
    return keys
