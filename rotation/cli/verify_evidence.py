"""`rotation verify-evidence DIR`: check a run folder's hash chain, file hashes and signature, offline, against the
signer you pin.

Exit codes: 0 intact and signed by the pinned signer; 1 a file, line or signature does not match (each named);
2 DIR is not a folder; 3 intact, but signer not verified (no --fingerprint or --public-key: anyone could have
rebuilt and re-signed the folder with a key of their own)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rotation.cli.parsing import SubParsers
from rotation.evidence.verify import verify_folder

EXIT_MISMATCH, EXIT_NOT_A_FOLDER, EXIT_SIGNER_NOT_VERIFIED = 1, 2, 3


def register(sub: SubParsers) -> None:
    p = sub.add_parser("verify-evidence", help="verify a run folder: hash chain, file hashes, Ed25519 signature",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="DIR", type=Path, help="a run folder, e.g. reports/latest")
    p.add_argument("--fingerprint", default=None, metavar="ed25519:sha256:HEX",
                   help="the signer's key fingerprint, from a record you trust (the run's output, the change ticket, "
                        "your key registry); `openssl pkey -pubin -in KEY.pem -outform DER | openssl dgst -sha256` "
                        "computes it from a public key")
    p.add_argument("--public-key", type=Path, default=None,
                   help="the signer's Ed25519 public key (PEM) as you obtained it from its owner")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    folder: Path = args.folder
    if not folder.is_dir():
        print(f"verify-evidence: {folder} is not a folder")
        return EXIT_NOT_A_FOLDER
    result = verify_folder(folder.resolve(), args.public_key, fingerprint=args.fingerprint)
    for line in result.ok:
        print(f"OK        {line}")
    for line in result.notes:
        print(f"NOTE      {line}")
    for line in result.problems:
        print(f"MISMATCH  {line}")
    if not result.passed:
        print(f"verify-evidence: {folder}: {len(result.problems)} problem(s)")
        return EXIT_MISMATCH
    if not result.signer_verified:
        print(f"verify-evidence: {folder}: intact, signer not verified (exit {EXIT_SIGNER_NOT_VERIFIED}): pass "
              f"--fingerprint or --public-key")
        return EXIT_SIGNER_NOT_VERIFIED
    print(f"verify-evidence: {folder}: verified, signed by {result.signer_fingerprint}")
    return 0
