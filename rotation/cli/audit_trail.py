"""`rotation audit-trail --from 2026-01-01 --to 2026-12-31`: every rotation of every credential in the period, from
the rotation log and the archived run folders, written as audit-trail.html and audit-trail.json.

Flags each gap longer than a credential's interval (the deployment configuration's policy), each rotation with no
archived live run folder naming it, each run folder whose signature does not verify against the pinned signer, and
each run folder naming a rotation the log does not hold. Run folders are found under --evidence-dir (repeatable;
default $ROTATION_EVIDENCE_ARCHIVE, else ./reports): every folder holding a manifest.json, at any depth.

Exit codes: 0 nothing flagged; 1 findings (listed); 2 the audit could not run (no database, a bad date)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import psycopg

from rotation.cli.parsing import SubParsers
from rotation.core.config import CONFIG_ENV, ConfigError, load_config
from rotation.core.database import connect
from rotation.evidence.audit_trail import audit
from rotation.evidence.audit_trail_html import render
from rotation.evidence.signing import AUDIT_TRAIL_FORMAT, SigningKeyError, load_private_key, seal_folder

ARCHIVE_ENV = "ROTATION_EVIDENCE_ARCHIVE"


def register(sub: SubParsers) -> None:
    p = sub.add_parser("audit-trail", help="every rotation in a period, with its evidence (HTML and JSON)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="start", required=True, type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                   help="first day of the period (UTC)")
    p.add_argument("--to", dest="end", required=True, type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                   help="last day of the period (UTC, inclusive)")
    p.add_argument("--dsn", default=os.environ.get("ROTATION_DSN"), help="the CRM database (default: $ROTATION_DSN)")
    p.add_argument("--config", default=None, help=f"the deployment configuration (default: ${CONFIG_ENV})")
    p.add_argument("--evidence-dir", action="append", type=Path, default=None,
                   help=f"where archived run folders are (repeatable; default: ${ARCHIVE_ENV}, else ./reports)")
    p.add_argument("--fingerprint", default=None, help="the evidence signer's key fingerprint (ed25519:sha256:...)")
    p.add_argument("--public-key", type=Path, default=None, help="the evidence signer's public key (PEM)")
    p.add_argument("--signing-key", type=Path, default=os.environ.get("ROTATION_SIGNING_KEY"),
                   help="Ed25519 private key (PEM) that signs the output like a run folder (default: "
                        "$ROTATION_SIGNING_KEY; without one a per-run key, which proves integrity, not authorship)")
    p.add_argument("--out", type=Path, default=None,
                   help="where audit-trail.html and .json go (default: ./audit-trail-FROM-TO)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.dsn:
        print("rotation audit-trail: no database: pass --dsn or set ROTATION_DSN", file=sys.stderr)
        return 2
    if args.end < args.start:
        print("rotation audit-trail: --to is before --from", file=sys.stderr)
        return 2
    start = dt.datetime.combine(args.start, dt.time(), dt.UTC)
    end = dt.datetime.combine(args.end + dt.timedelta(days=1), dt.time(), dt.UTC)
    archives = args.evidence_dir or [Path(os.environ.get(ARCHIVE_ENV) or "reports")]
    try:
        signing_key = load_private_key(Path(args.signing_key)) if args.signing_key else None
    except SigningKeyError as exc:
        print(f"rotation audit-trail: {exc}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        with connect(args.dsn) as conn:
            trail = audit(conn, config, archives, start, end, public_key=args.public_key, fingerprint=args.fingerprint)
    except (ConfigError, psycopg.Error) as exc:
        print(f"rotation audit-trail: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path(f"audit-trail-{args.start}-{args.end}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit-trail.json").write_text(json.dumps(trail.as_json(), indent=2) + "\n", encoding="utf-8")
    (out / "audit-trail.html").write_text(render(trail), encoding="utf-8")
    signer = seal_folder(out, signing_key, {"period": f"{args.start} .. {args.end}", "findings": len(trail.findings),
                                            "signing_key": "configured" if signing_key else "per-run"},
                         AUDIT_TRAIL_FORMAT)
    print(f"audit trail {args.start} .. {args.end}: {len(trail.rotations)} rotations, {len(trail.folders)} run "
          f"folders, {len(trail.findings)} finding(s); written to {out}/audit-trail.html and audit-trail.json")
    print(f"signed by: {signer}" + ("" if signing_key else " (a per-run key: it proves the output unchanged since "
                                                          "signing, not who signed it)"))
    print(f"verify with: rotation verify-evidence {out} --fingerprint {signer}")
    for finding in trail.findings:
        print(f"FLAG  {finding}")
    for line in trail.awaiting_retirement:
        print(f"AWAITING RETIREMENT  {line}")
    for line in trail.escrows_due:
        print(f"ESCROW DUE  {line}")
    return 1 if trail.findings else 0
