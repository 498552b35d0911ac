"""`rotation db-key rotate|resume`: runbook section 1 on the live systems.

Both run the scheduled scenario of features/rotation/db_encryption_key.feature with `--target live`: the same steps,
live guard and evidence recorder as a rehearsal, and a signed run folder under reports/. `resume` is the same command:
a rotation in progress (a crash, a kill, a failed step fixed since) is taken up where it stopped, every step either
finishing its work or recording that it was done.
"""

from __future__ import annotations

import argparse

from rotation.cli.features import add_command_options, run_live
from rotation.cli.option_table import DB_KEY, taken_by
from rotation.cli.parsing import SubParsers
from rotation.cli.retire import add_retire_options, retire

SELECTION = "scheduled and db_encryption_key"
CREDENTIAL = "database"  # the configuration's credential whose provider is the database


def register(sub: SubParsers) -> None:
    p = sub.add_parser("db-key", help="rotate DB_ENCRYPTION_KEY and re-encrypt all client PII (runbook section 1)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("rotate", "resume", "retire"),
                   help="rotate: start a rotation, or take up the one in progress; resume: the same; retire: after "
                        "the quiet period, destroy (or escrow) the old key with a signed record (`rotation retire`)")
    add_command_options(p, DB_KEY)
    add_retire_options(p, skip=tuple(option.flag for option in taken_by(DB_KEY)))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "retire":
        return retire(args, CREDENTIAL)
    return run_live(SELECTION, args)
