"""`rotation verify-evidence DIR`: check a run folder's hash chain, file hashes and signature, offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from rotation.cli.parsing import SubParsers
from rotation.evidence.verify import verify_folder


def register(sub: SubParsers) -> None:
    p = sub.add_parser("verify-evidence", help="verify a run folder: hash chain, file hashes, Ed25519 signature",
                       description="Exit 0 when every check passes; 1 naming each file that does not match; "
                                   "2 when DIR is not a folder.")
    p.add_argument("folder", metavar="DIR", type=Path, help="a run folder, e.g. reports/latest")
    p.add_argument("--public-key", type=Path, default=None,
                   help="the signer's Ed25519 public key (PEM) you hold; default: the one in DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    folder: Path = args.folder
    if not folder.is_dir():
        print(f"verify-evidence: {folder} is not a folder")
        return 2
    result = verify_folder(folder.resolve(), args.public_key)
    for line in result.ok:
        print(f"OK        {line}")
    for line in result.notes:
        print(f"NOTE      {line}")
    for line in result.problems:
        print(f"MISMATCH  {line}")
    print(f"verify-evidence: {folder}: {'verified' if result.passed else f'{len(result.problems)} problem(s)'}")
    return 0 if result.passed else 1
