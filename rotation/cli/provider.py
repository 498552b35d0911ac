"""`rotation provider rotate|resume twilio|whatsapp|smtp`: runbook sections 2-4 on the live systems.

The command runs the scheduled scenario of the credential's feature (features/rotation/twilio_auth_token.feature,
whatsapp_access_token.feature, smtp_password.feature) with `--target live`: the steps an auditor reads, through the
live guard (plan, --confirm-live, change id, approver, --dry-run) and the evidence recorder, leaving a signed run
folder under reports/. `resume` is the same command: run again after a crash or a provider outage, each step sees the
rotation's state and skips or finishes its work.

The SMTP password has no rotation API: create the new password at the provider, put it in $SMTP_NEW_PASSWORD (or
type it at the prompt; it is never a command-line argument), and revoke the old one there when asked.

Twilio: a secondary auth token that Twilio already holds and this rotation did not create stops the rotation before
anything changes; --replace-secondary deletes it and creates a new one (the evidence says so). The test SMS must
reach `delivered` within --delivery-wait seconds. A Twilio Service or Function (Classic) that embeds the token gets
403 for about a minute after the promotion: wait that minute before relying on them (docs/provider-rotation.md).

WhatsApp and SMTP: the test message's check reads "accepted by Meta" / "accepted by the relay (250)"; with
--prove-delivery-from-app, WhatsApp delivery is proven from the app's own records within --delivery-wait.
Any other arguments go to pytest as they are.
"""

from __future__ import annotations

import argparse

from rotation.cli.features import add_command_options, run_live
from rotation.cli.option_table import PROVIDER, taken_by
from rotation.cli.parsing import SubParsers
from rotation.cli.retire import add_retire_options, retire
from rotation.core.config import ConfigError, load_config


def register(sub: SubParsers) -> None:
    p = sub.add_parser("provider", help="rotate the Twilio auth token, the WhatsApp access token or the SMTP password "
                                        "(runbook sections 2-4)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("rotate", "resume", "retire"),
                   help="rotate/resume: both finish a rotation in progress (after a crash or an outage) and otherwise "
                        "start one; retire: after the quiet period, destroy the old value's copies with a signed "
                        "record (`rotation retire`)")
    p.add_argument("provider", metavar="PROVIDER",
                   help="twilio, whatsapp or smtp (any provider, credential type or label of the configuration)")
    add_command_options(p, PROVIDER)
    add_retire_options(p, skip=tuple(option.flag for option in taken_by(PROVIDER)))
    p.set_defaults(func=run, passes_unknown_args=True)


def selection(args: argparse.Namespace) -> str:
    """The pytest -m expression of the credential's scheduled scenario, from the credential registry."""
    credential = load_config(args.config).credential(args.provider)
    if credential.provider == "database":
        raise ConfigError(f"{credential.label} is not a provider credential: use `rotation db-key {args.action}`")
    return f"scheduled and {credential.type}"


def run(args: argparse.Namespace) -> int:
    if args.action == "retire":
        return retire(args, args.provider)
    try:
        chosen = selection(args)
    except ConfigError as exc:
        print(f"rotation provider: {exc}")
        return 2
    return run_live(chosen, args)
