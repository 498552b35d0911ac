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

from rotation.cli.features import LIVE_FLAGS, LIVE_OPTIONS, add_live_options, run_live
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
    add_live_options(p)
    p.add_argument("--replace-secondary", action="store_true",
                   help="Twilio: delete a secondary auth token this rotation did not create, then create a new one")
    p.add_argument("--delivery-wait", type=float, default=None, metavar="SECONDS",
                   help="how long to wait for the test message's final word (default 120)")
    p.add_argument("--prove-delivery-from-app", action="store_true",
                   help="WhatsApp: prove delivery from the app's own delivery records")
    add_retire_options(p, skip=tuple(flag for flag, *_ in LIVE_OPTIONS) + tuple(flag for flag, _ in LIVE_FLAGS))
    p.set_defaults(func=run, passes_unknown_args=True)


def provider_options(args: argparse.Namespace) -> list[str]:
    """This command's own options, as the suite's pytest options."""
    flags = [f for f, on in (("--replace-secondary", args.replace_secondary),
                             ("--prove-delivery-from-app", args.prove_delivery_from_app)) if on]
    return flags + ([f"--delivery-wait={args.delivery_wait}"] if args.delivery_wait is not None else [])


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
    return run_live(chosen, args, *provider_options(args))
