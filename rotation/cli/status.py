"""`rotation status`: rotation status of every credential, for people, cron and CI.

Each credential's interval and warning period come from the deployment configuration (--config or ROTATION_CONFIG,
else the built-in default that matches the runbook): the same registry that sets a logged rotation's
next_rotation_due, so the two cannot disagree. Rows the app's own trigger logs under its service names ('twilio',
'whatsapp', 'smtp': the registry's log_aliases) count for their credential.

Exit codes: 0 every credential current; 1 any rotation due (within its warning period); 2 any expired
or never rotated; 3 the status could not be determined or the alert e-mail could not be sent
(argparse usage errors also exit 2, as always with argparse)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import psycopg

from rotation.cli.parsing import SubParsers
from rotation.core.clock import utc_now
from rotation.core.config import CONFIG_ENV, ConfigError, load_config
from rotation.monitoring import check, status

EXIT_ERROR = 3
REMOVED_SCHEDULE_ENV = "ROTATION_SCHEDULE"
SCHEDULE_MOVED = ("the schedule file is gone: each credential's interval_days and warning_days live in the deployment "
                  f"configuration (--config or {CONFIG_ENV}; see docs/monitoring.md), the same registry the rotation "
                  "log's next_rotation_due comes from")


def register(sub: SubParsers) -> None:
    p = sub.add_parser("status", help="rotation status per credential (exit 0 current, 1 due, 2 expired)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", default=os.environ.get("ROTATION_DSN"),
                   help="PostgreSQL DSN of the CRM database (default: $ROTATION_DSN)")
    p.add_argument("--config", default=None,
                   help=f"the deployment configuration with every credential's interval and warning period "
                        f"(default: ${CONFIG_ENV}, else the built-in one: the runbook's 90 days, warning 7 days "
                        "before)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--schedule", default=None, help=argparse.SUPPRESS)  # removed: refused with an explanation
    p.add_argument("--as-of", type=_aware_datetime, default=None, metavar="ISO-8601",
                   help="evaluate at this instant instead of now (e.g. 2026-12-01T06:00:00+00:00)")
    p.add_argument("--alert-email", metavar="ADDRESS", default=None,
                   help="when any credential is due or expired, e-mail the CRITICAL/WARNING lines to ADDRESS")
    p.add_argument("--alert-from", metavar="ADDRESS", default=None,
                   help="sender of the alert e-mail (default: the configuration's [stakeholders] sender)")
    p.add_argument("--env-file", type=Path, default=Path(".env"),
                   help="the app's .env with SMTP_HOST, SMTP_PORT, SMTP_USERNAME and the SMTP credential's password "
                        "(default ./.env)")
    p.add_argument("--smtp-ca-file", type=Path, default=None,
                   help="CA certificate(s) to verify the SMTP server with instead of the system store "
                        "(default: SMTP_CA_FILE from .env if set, e.g. staging's self-signed certificate)")
    p.set_defaults(func=run)


def _aware_datetime(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date-time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a UTC offset, e.g. 2026-12-01T06:00:00+00:00")
    return moment


def _error(message: str) -> int:
    print(f"rotation status: {message}", file=sys.stderr)
    return EXIT_ERROR


def run(args: argparse.Namespace) -> int:
    if args.schedule or os.environ.get(REMOVED_SCHEDULE_ENV):
        return _error(f"--schedule / {REMOVED_SCHEDULE_ENV} no longer apply: {SCHEDULE_MOVED}")
    if not args.dsn:
        return _error("no database: pass --dsn or set ROTATION_DSN")
    as_of = args.as_of or utc_now()
    try:
        config = load_config(args.config)
        daily = check.daily_check(args.dsn, config, as_of=as_of, alert_to=args.alert_email, env_file=args.env_file,
                                  ca_file=args.smtp_ca_file, sender=args.alert_from)
    except (ConfigError, ValueError) as e:
        return _error(str(e))
    except psycopg.Error as e:
        return _error(f"cannot read security_credential_rotations: {type(e).__name__}: {e}")
    report = daily.report
    retiring, retirement_due = (status.retirement_lines(args.env_file, config, as_of) if args.env_file.is_file()
                                else ([], False))
    if args.json:
        print(json.dumps({**report.to_json(), "retirement": retiring}, indent=2))
    else:
        print(render_table(report) + ("\n\nRetirement:\n" + "\n".join(retiring) if retiring else ""))
    if daily.alert.error:
        return _error(daily.alert.describe())
    if daily.alert.sent:
        print(daily.alert.describe(), file=sys.stderr)
    return max(report.exit_code, status.EXIT_DUE if retirement_due else status.EXIT_CURRENT)


def _when(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "never"


def render_table(report: check.StatusReport) -> str:
    header = ("CREDENTIAL", "LAST ROTATED (UTC)", "ROTATION DUE (UTC)", "DAYS LEFT", "STATE")
    rows = [(name, _when(s.last_rotated_at), _when(s.rotation_due_at) if s.rotation_due_at else "-",
             "-" if s.days_until_rotation is None else str(s.days_until_rotation),
             s.state.upper().replace("_", " ")) for name, s in report.statuses.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = [f"Credential rotation status as of {_when(report.as_of)} UTC"]
    for r in [header, *rows]:
        out.append("  ".join(cell.rjust(w) if i == 3 else cell.ljust(w) for i, (cell, w) in
                             enumerate(zip(r, widths, strict=True))).rstrip())
    lines = report.alert_lines
    out.extend(["", *lines] if lines else ["", "All credentials current."])
    return "\n".join(out)
