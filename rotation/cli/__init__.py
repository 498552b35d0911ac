"""The `rotation` console script. Each subcommand lives in rotation/cli/<name>.py and exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int` (the exit code)."""

from __future__ import annotations

import argparse
import importlib
import sys

from rotation import DISTRIBUTION, __version__

COMMANDS = (
    "rehearse",
    "db-key",
    "status",
    "verify-evidence",
    "provider",
    "emergency",
    "config",
    "audit-trail",
    "retire",
    "escrow",
    "evidence",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rotation", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s ({DISTRIBUTION}) {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"rotation.cli.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "passes_unknown_args", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.unknown_args = unknown
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
