"""`rotation status`: rotation status of every credential type, for people, cron and CI.

Exit codes: 0 every credential current; 1 any rotation due (within its warning period); 2 any expired
or never rotated; 3 the status could not be determined or the alert e-mail could not be sent
(argparse usage errors also exit 2, as always with argparse)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import psycopg

from rotation.cli.parsing import SubParsers
from rotation.monitoring import alerts, status

EXIT_ERROR = 3


def register(sub: SubParsers) -> None:
    p = sub.add_parser("status", help="rotation status per credential (exit 0 current, 1 due, 2 expired)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", default=os.environ.get("ROTATION_DSN"),
                   help="PostgreSQL DSN of the CRM database (default: $ROTATION_DSN)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--schedule", type=Path, default=os.environ.get("ROTATION_SCHEDULE") or None,
                   help="YAML/JSON file overriding the runbook's 90/7-day schedule per credential type "
                        "(default: $ROTATION_SCHEDULE)")
    p.add_argument("--as-of", type=_aware_datetime, default=None, metavar="ISO-8601",
                   help="evaluate at this instant instead of now (e.g. 2026-12-01T06:00:00+00:00)")
    p.add_argument("--alert-email", metavar="ADDRESS", default=None,
                   help="when any credential is due or expired, e-mail the CRITICAL/WARNING lines to ADDRESS")
    p.add_argument("--alert-from", metavar="ADDRESS", default=alerts.DEFAULT_FROM,
                   help=f"sender of the alert e-mail (default {alerts.DEFAULT_FROM})")
    p.add_argument("--env-file", type=Path, default=Path(".env"),
                   help="the app's .env with SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD "
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


def run(args: argparse.Namespace) -> int:
    if not args.dsn:
        print("rotation status: no database: pass --dsn or set ROTATION_DSN", file=sys.stderr)
        return EXIT_ERROR
    as_of = args.as_of or status.utc_now()
    try:
        schedule = status.load_schedule(args.schedule)
        with psycopg.connect(args.dsn, connect_timeout=15) as conn:
            statuses = status.rotation_status(conn, schedule, clock=lambda: as_of)
    except (status.ScheduleError, ValueError) as e:
        print(f"rotation status: {e}", file=sys.stderr)
        return EXIT_ERROR
    except psycopg.Error as e:
        print(f"rotation status: cannot read security_credential_rotations: {type(e).__name__}: {e}",
              file=sys.stderr)
        return EXIT_ERROR
    code = status.exit_code(statuses.values())
    lines = status.alert_lines(statuses.values())
    print(render_json(statuses, as_of, code) if args.json else render_table(statuses, as_of, lines))
    if args.alert_email and lines:
        try:
            settings = alerts.SmtpSettings.from_env_file(args.env_file)
            alerts.send_alert(lines, args.alert_email, settings, sender=args.alert_from,
                              ca_file=args.smtp_ca_file)
        except (alerts.AlertError, OSError) as e:
            print(f"rotation status: alert e-mail NOT sent: {e}", file=sys.stderr)
            return EXIT_ERROR
        print(f"alert e-mail sent to {args.alert_email}", file=sys.stderr)
    return code


def render_json(statuses: Mapping[str, status.RotationStatus], as_of: dt.datetime, code: int) -> str:
    return json.dumps({
        "as_of": as_of.astimezone(dt.UTC).isoformat(),
        "exit_code": code,
        "credentials": {name: s.to_json() for name, s in statuses.items()},
    }, indent=2)


def _when(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "never"


def render_table(statuses: Mapping[str, status.RotationStatus], as_of: dt.datetime, lines: list[str]) -> str:
    header = ("CREDENTIAL", "LAST ROTATED (UTC)", "ROTATION DUE (UTC)", "DAYS LEFT", "STATE")
    rows = [(name, _when(s.last_rotated_at), _when(s.rotation_due_at) if s.rotation_due_at else "-",
             "-" if s.days_until_rotation is None else str(s.days_until_rotation),
             s.state.upper().replace("_", " ")) for name, s in statuses.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = [f"Credential rotation status as of {_when(as_of)} UTC"]
    for r in [header, *rows]:
        out.append("  ".join(cell.rjust(w) if i == 3 else cell.ljust(w) for i, (cell, w) in
                             enumerate(zip(r, widths, strict=True))).rstrip())
    out.extend(["", *lines] if lines else ["", "All credentials current."])
    return "\n".join(out)
