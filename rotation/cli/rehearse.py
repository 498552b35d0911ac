"""`rotation rehearse`: the full staging rehearsal of every runbook procedure, writing the evidence report."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rehearse", help="run every procedure in staging and write reports/<timestamp>-staging/",
                       description="Run every runbook procedure against staging stand-ins. Any other arguments go "
                                   "to pytest as they are (e.g. -m emergency, --dsn=..., --rows=20000).")
    p.set_defaults(func=run, passes_unknown_args=True)


def run(args: argparse.Namespace) -> int:
    extra = [a for a in args.unknown_args if a != "--"]
    return int(pytest.main(["-c", str(PROJECT_ROOT / "pytest.ini"), "--rootdir", str(PROJECT_ROOT),
                            "--target", "staging", str(PROJECT_ROOT / "steps"), *extra]))
