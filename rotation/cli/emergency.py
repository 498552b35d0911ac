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

from rotation.cli.features import add_command_options, run_live
from rotation.cli.option_table import EMERGENCY
from rotation.cli.parsing import SubParsers


def register(sub: SubParsers) -> None:
    p = sub.add_parser("emergency", help="rotate compromised credentials now, review access, notify stakeholders, "
                                         "write the incident report (runbook: Emergency Rotation Procedure)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_command_options(p, EMERGENCY)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_live("emergency", args)
