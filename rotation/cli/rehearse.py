"""`rotation rehearse`: the full staging rehearsal of every runbook procedure, writing the evidence report."""

from __future__ import annotations

import argparse

from rotation.cli.features import run_features
from rotation.cli.parsing import SubParsers


def register(sub: SubParsers) -> None:
    p = sub.add_parser("rehearse", help="run every procedure in staging and write ./reports/<timestamp>-staging/",
                       description="Run every runbook procedure against staging stand-ins. Any other arguments go "
                                   "to pytest as they are (e.g. -m emergency, --dsn=..., --rows=20000).")
    p.set_defaults(func=run, passes_unknown_args=True)


def run(args: argparse.Namespace) -> int:
    return run_features("--target=staging", *[a for a in args.unknown_args if a != "--"])
