"""`rotation provider rotate|resume twilio|whatsapp|smtp`: runbook sections 2-4 from the command line, resumable
after a crash at any of the four steps.

The SMTP password has no rotation API: live, put the new password (created at the provider) in $SMTP_NEW_PASSWORD
or type it at the prompt; it is never a command-line argument. Staging passes --smtp-console (the stand-in's).
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
from pathlib import Path

import psycopg

from rotation.cli.parsing import SubParsers
from rotation.core import envfile, state
from rotation.core.app_control import AppCommands, AppControlError
from rotation.providers import procedure as rotation
from rotation.providers.base import ProviderError, RetryPolicy
from rotation.providers.factory import CREDENTIAL_TYPES, NAMES, provider_for

KILL_AFTER_ENV = "ROTATION_TEST_KILL_AFTER"  # crash-safety tests: SIGKILL this process once the named step is recorded


def register(sub: SubParsers) -> None:
    p = sub.add_parser("provider", help="rotate TWILIO_AUTH_TOKEN, WHATSAPP_ACCESS_TOKEN or SMTP_PASSWORD "
                                        "(runbook sections 2-4)", description=__doc__)
    p.add_argument("action", choices=("rotate", "resume"),
                   help="rotate: start a new rotation; resume: finish one a crash or a provider outage interrupted")
    p.add_argument("provider", choices=NAMES)
    p.add_argument("--env-file", type=Path, required=True, help="the app's .env")
    p.add_argument("--dsn", default=os.environ.get("ROTATION_DSN"),
                   help="the CRM database for the rotation log (default: ROTATION_DSN, else DATABASE_URL in .env)")
    p.add_argument("--operator", default=None, help="rotated_by (default: the OS user)")
    p.add_argument("--reason", default="Scheduled 90-day rotation")
    p.add_argument("--abandon-pending", action="store_true",
                   help="start over a PENDING rotation whose new credential never reached .env")
    p.add_argument("--app-reload", default="systemctl reload event-planning-api")
    p.add_argument("--app-restart", default="systemctl restart event-planning-api",
                   help="used when the reload command fails")
    p.add_argument("--health-url", default="http://localhost:8000/health")
    p.add_argument("--smtp-console", default=None, help="staging only: the SMTP stand-in's console URL")
    p.add_argument("--retry-attempts", type=int, default=4, help="attempts per provider call (5xx, timeouts)")
    p.add_argument("--retry-delay", type=float, default=0.5, help="first backoff delay in seconds (doubles, max 8x)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a provider call counts as timed out")
    p.set_defaults(func=run)


def say(name: str, message: str) -> None:
    print(f"[{name}] {message}", file=sys.stderr, flush=True)


def kill_after(step: str) -> None:
    if os.environ.get(KILL_AFTER_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def run(args: argparse.Namespace) -> int:
    policy = RetryPolicy(args.retry_attempts, args.retry_delay, args.retry_delay * 8, args.timeout)
    try:
        env = envfile.read_env(args.env_file)
        console = None
        if args.smtp_console:
            from staging.smtp_standin import StandInConsole

            console = StandInConsole(args.smtp_console)
        provider = provider_for(args.provider, env, policy=policy, smtp_console=console)
        dsn = args.dsn or env.get("DATABASE_URL", "")
        if not dsn:
            say(args.provider, "no database for the rotation log: pass --dsn or set ROTATION_DSN")
            return 2
        app = AppCommands(start="", stop="", restart=args.app_restart, reload=args.app_reload,
                          health_url=args.health_url)
        ctx = rotation.Context(args.env_file, dsn, app, args.operator or getpass.getuser(), args.reason)
        record = rotation.run(ctx, provider, resume=args.action == "resume", abandon=args.abandon_pending,
                              say=lambda m: say(args.provider, m), after_step=kill_after)
    except rotation.NothingToResume as done:
        say(args.provider, str(done))
        return 0
    except (ProviderError, state.StaleRotationError, rotation.ResumeError, envfile.EnvFileError,
            AppControlError) as exc:  # our errors name what is wrong and never carry a credential
        say(args.provider, f"FAILED: {type(exc).__name__}: {exc}")
        current = state.load(args.env_file, CREDENTIAL_TYPES[args.provider])
        if current and current.in_progress:
            say(args.provider, f"state: step '{current.step}' done; rerun with `resume` once the cause is fixed")
        return 1
    except (psycopg.Error, KeyError, ValueError) as exc:
        say(args.provider, f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
        return 2
    say(args.provider, f"done: rotation {record.rotation_id} logged, next due {record.next_rotation_due:%Y-%m-%d}")
    return 0
