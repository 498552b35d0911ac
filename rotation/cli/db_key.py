"""`rotation db-key rotate|resume`: runbook section 1 on the live systems.

Both run the scheduled scenario of features/rotation/db_encryption_key.feature with `--target live`: the same steps,
live guard and evidence recorder as a rehearsal, and a signed run folder under reports/. `resume` is the same command:
a rotation in progress (a crash, a kill, a failed step fixed since) is taken up where it stopped, every step either
finishing its work or recording that it was done.
"""

from __future__ import annotations

import argparse

from rotation.cli.features import LIVE_FLAGS, LIVE_OPTIONS, add_live_options, run_live
from rotation.cli.parsing import SubParsers
from rotation.cli.retire import add_retire_options, retire

SELECTION = "scheduled and db_encryption_key"
CREDENTIAL = "database"  # the configuration's credential whose provider is the database
ALREADY = tuple(flag for flag, *_ in LIVE_OPTIONS) + tuple(flag for flag, _ in LIVE_FLAGS)


def register(sub: SubParsers) -> None:
    p = sub.add_parser("db-key", help="rotate DB_ENCRYPTION_KEY and re-encrypt all client PII (runbook section 1)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("rotate", "resume", "retire"),
                   help="rotate: start a rotation, or take up the one in progress; resume: the same; retire: after "
                        "the quiet period, destroy (or escrow) the old key with a signed record (`rotation retire`)")
    add_live_options(p)
    p.add_argument("--stop-the-world", action="store_true",
                   help="re-encrypt every value while the app is stopped (default: stage the new values while it "
                        "runs, stop it only for the cutover)")
    p.add_argument("--max-rate", type=float, default=None, metavar="ROWS_PER_S",
                   help="staging: at most this many rows per second while the app runs (default: no limit)")
    add_retire_options(p, skip=ALREADY)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "retire":
        return retire(args, CREDENTIAL)
    extra = (["--stop-the-world"] if args.stop_the_world else []) + (
        [f"--max-rate={args.max_rate}"] if args.max_rate else [])
    return run_live(SELECTION, args, *extra)
