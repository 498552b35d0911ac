"""`rotation escrow list|open`: the old keys sealed to the recovery key when they were retired ([retirement] escrow).

`list` shows each escrow with its destruction date (DUE once passed: the next `rotation retire` of its credential
destroys it). `open FILE --recovery-key KEY.pem --out FILE` is the custodian's: it opens an escrow with the recovery
private key and writes the value to --out at mode 0600 (never to the terminal), to restore a database backup
encrypted under that key. Any other key fails, naming nothing of the value.

Exit codes: 0 done; 1 the escrow does not open with that key (or was changed); 2 bad input."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from rotation.cli.parsing import SubParsers
from rotation.core import escrow


def register(sub: SubParsers) -> None:
    p = sub.add_parser("escrow", help="list escrowed old keys, or open one with the recovery private key",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("list", "open"))
    p.add_argument("path", type=Path, metavar="PATH", help="list: the escrow folder; open: the escrow file")
    p.add_argument("--recovery-key", type=Path, default=None, help="open: the recovery private key (PEM)")
    p.add_argument("--out", type=Path, default=None, help="open: where to write the value (mode 0600; must not exist)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        now = dt.datetime.now(dt.UTC)
        for item in escrow.all_in(args.path):
            due = "DUE" if item.due(now) else "kept"
            print(f"{due:<5} {item.credential} {item.fingerprint} sealed {item.sealed_at.isoformat()} destroy after "
                  f"{item.destroy_after.isoformat()} ({item.path.name})")
        return 0
    if not args.recovery_key or not args.out:
        print("rotation escrow open: needs --recovery-key and --out", file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"rotation escrow open: {args.out} exists; choose a new file", file=sys.stderr)
        return 2
    try:
        value = escrow.open_escrow(args.path, args.recovery_key.read_bytes())
    except (escrow.EscrowError, OSError, KeyError, ValueError) as exc:
        print(f"rotation escrow open: {exc}", file=sys.stderr)
        return 1
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value.reveal())
    print(f"opened {args.path.name}: {value.fingerprint} written to {args.out} (mode 0600)")
    return 0
