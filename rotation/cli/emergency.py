"""`rotation emergency`: the runbook's Emergency Rotation Procedure and Post-Incident Actions on the live systems.

It runs the emergency features (`pytest -m emergency --target live`) through the same steps, the same live guard and
the same evidence recorder as a rehearsal: the plan is printed first; nothing is touched without --confirm-live (or
ROTATION_CONFIRM_LIVE=yes), a change id and an approver; --dry-run prints the plan and stops. Every run leaves a
signed run folder under reports/ with the incident report in it. Run the same command again after an interruption:
each rotation resumes from its state beside .env, without revoking anything twice.

    rotation emergency --compromised twilio,smtp --dsn "$ROTATION_DSN" --env-file=/srv/event-planning/.env \\
        --change-id CHG-1234 --approver ciso@example.org --review-policy=/etc/rotation/review-policy.yaml \\
        --incident-start 2026-11-25T06:00:00+00:00 --incident-end 2026-11-25T09:30:00+00:00 \\
        --root-cause "token pasted into a public gist" --preventive-measure "secret scanning on every repository" \\
        --confirm-live
"""

from __future__ import annotations

import argparse

from rotation.cli.features import add_live_options, run_live
from rotation.cli.parsing import SubParsers

# flag -> help; each is handed to the suite's option of the same name (rotation_pytest/options.py)
EMERGENCY_OPTIONS: tuple[tuple[str, str], ...] = (
    ("--compromised", "the compromised credentials, comma-separated: credential types, provider names or labels "
                      "(e.g. twilio,smtp), or 'all'; required"),
    ("--review-policy", "the access review policy (YAML: allowed_accessors, allowed_networks, ...); required"),
    ("--review-window-hours", "how far back the access review looks (default 24, or the policy's window_hours)"),
    ("--notify-security", "e-mail addresses of the security team (default: the configuration's [stakeholders])"),
    ("--notify-sysadmins", "e-mail addresses of the system administrators"),
    ("--notify-compliance", "e-mail addresses of the compliance officer"),
    ("--notify-from", "sender of the notification"),
    ("--incident-start", "start of the incident window, ISO 8601 with a UTC offset (without it the post-incident "
                         "audit is skipped)"),
    ("--incident-end", "end of the incident window"),
    ("--detected-at", "when the compromise was detected, ISO 8601 with a UTC offset (time-to-revoke and "
                      "time-to-restore are measured from it against the runbook's one-hour target)"),
    ("--root-cause", "the root cause, for the incident report"),
    ("--incident-notes", "YAML file with root_cause, preventive_measures and summary for the incident report"),
)
REPEATABLE: tuple[tuple[str, str], ...] = (
    ("--preventive-measure", "a preventive measure taken, for the incident report (repeatable)"),
)


def register(sub: SubParsers) -> None:
    p = sub.add_parser("emergency", help="rotate compromised credentials now, review access, notify stakeholders, "
                                         "write the incident report (runbook: Emergency Rotation Procedure)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_live_options(p)
    for flag, text in EMERGENCY_OPTIONS:
        p.add_argument(flag, default=None, help=text)
    for flag, text in REPEATABLE:
        p.add_argument(flag, action="append", default=None, help=text)
    p.set_defaults(func=run)


def emergency_options(args: argparse.Namespace) -> list[str]:
    """The emergency options given, as the suite's pytest options (`--name=value`)."""
    given = [f"{flag}={value}" for flag, _ in EMERGENCY_OPTIONS
             if (value := getattr(args, flag[2:].replace("-", "_"))) is not None]
    return given + [f"{flag}={value}" for flag, _ in REPEATABLE
                    for value in getattr(args, flag[2:].replace("-", "_")) or ()]


def run(args: argparse.Namespace) -> int:
    return run_live("emergency", args, *emergency_options(args))
