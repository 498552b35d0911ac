"""`rotation evidence seal`: seal the journal of a run whose own session could not write its run folder (the signing
key or the reports folder failed after the change, or the session was killed) into a signed run folder, now.

Every event of a run is journaled as it happens (reports/.journals/<run id>.jsonl); a session that cannot write its
folder keeps the journal and says why in it. This command (or the next run writing to the same reports folder) replays
it into a normal run folder that says it was sealed late: when, by whom (--operator, the OS account), with which
command, and why the run's own session did not. A journal whose session is still running is left alone.

Exit codes: 0 sealed every journal left (or none was left); 1 a journal could not be sealed (named); 2 bad input."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rotation.cli.parsing import SubParsers
from rotation.core.duties import os_user
from rotation.evidence.controls import load_catalog
from rotation.evidence.journal import JOURNALS, seal_dead_journals
from rotation.evidence.report import reports_folder
from rotation.evidence.signing import SigningKeyError, load_private_key


def register(sub: SubParsers) -> None:
    p = sub.add_parser("evidence", help="seal a run's journal into a signed run folder when its session could not",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("seal",))
    p.add_argument("--reports-dir", type=Path, default=None,
                   help="the reports folder (default: reports/ in the current directory)")
    p.add_argument("--signing-key", type=Path, default=None,
                   help="Ed25519 private key (PEM) to sign with (or $ROTATION_SIGNING_KEY; without one a per-run key, "
                        "which an auditor cannot pin)")
    p.add_argument("--operator", default=None, help="who seals it (default: $ROTATION_OPERATOR)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    reports = reports_folder(args.reports_dir)
    key_path = args.signing_key or (Path(os.environ["ROTATION_SIGNING_KEY"])
                                    if os.environ.get("ROTATION_SIGNING_KEY") else None)
    try:
        key = load_private_key(key_path) if key_path else None
    except SigningKeyError as exc:
        print(f"rotation evidence seal: {exc}", file=sys.stderr)
        return 2
    operator = args.operator or os.environ.get("ROTATION_OPERATOR")
    sealer: dict[str, object] = {"by command": "rotation evidence seal",
                                 "sealed by (operator)": operator or "not declared", "OS account": os_user(),
                                 "signing key": f"configured: {key_path.name}" if key_path else "per-run"}
    journals = sorted((reports / JOURNALS).glob("*.jsonl"))
    try:
        outputs = seal_dead_journals(reports, load_catalog(), sealed_by="rotation evidence seal", signing_key=key,
                                     sealer=sealer)
    except (OSError, ValueError) as exc:
        print(f"rotation evidence seal: {type(exc).__name__}: {exc}; the journals are kept", file=sys.stderr)
        return 1
    for out in outputs:
        print(f"sealed late: {out.folder} ({out.verdict}); verify with: rotation verify-evidence {out.folder} "
              f"--fingerprint {out.public_key_fingerprint}")
    alive = [p.name for p in journals if p.exists()]
    for name in alive:
        print(f"left alone: {JOURNALS}/{name} (its session is still running)")
    if not journals:
        print(f"no journal to seal under {reports / JOURNALS}")
    unreadable = sorted(p.name for p in (reports / JOURNALS).glob("*.unreadable"))
    for name in unreadable:
        print(f"could not be read, kept for a person: {JOURNALS}/{name}")
    return 1 if unreadable else 0
