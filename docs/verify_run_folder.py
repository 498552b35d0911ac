#!/usr/bin/env python3
"""Verify a rotation-runbook run folder without the rotation-runbook package: only hashlib and cryptography.

    python3 verify_run_folder.py RUN_FOLDER --fingerprint ed25519:sha256:HEX   (or --public-key signer.pub.pem)

It checks what docs/evidence.md specifies: the Ed25519 signature over the exact bytes of manifest.json, the SHA-256 of
every file listed there (and that no file was added), and the hash chain of evidence.jsonl line by line. Exit codes
match `rotation verify-evidence`: 0 intact and signed by the pinned signer, 1 a mismatch (each one printed),
2 not a folder, 3 intact but the signer not pinned.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

GENESIS = "0" * 64
UNSIGNED = {"manifest.json", "manifest.sig"}


def fingerprint(public_key) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "ed25519:sha256:" + hashlib.sha256(der).hexdigest()


def chain_problems(data: bytes, head: str) -> list[str]:
    if not data.endswith(b"\n"):
        return ["evidence.jsonl: does not end with a newline"]
    problems, prev_hash, prev_seq = [], GENESIS, 0
    lines = data[:-1].split(b"\n")
    for number, line in enumerate(lines, start=1):  # line numbers count from 1, as seq does
        try:
            entry = json.loads(line)
        except ValueError:
            entry = {}
        seq = entry.get("seq") if isinstance(entry, dict) else None
        if seq is None:
            problems.append(f"evidence.jsonl line {number}: not a chain line (no seq)")
            seq = prev_seq + 1
        elif seq != prev_seq + 1:
            problems.append(f"evidence.jsonl line {number}: seq {seq} follows seq {prev_seq} (lines removed, "
                            "inserted or moved)")
        elif entry.get("prev") != prev_hash:
            problems.append(f"evidence.jsonl line {number}: prev does not match the SHA-256 of line {number - 1}")
        prev_hash, prev_seq = hashlib.sha256(line).hexdigest(), seq  # the line's bytes, without its newline
    if not problems and prev_hash != head:
        problems.append("evidence.jsonl: the last line's SHA-256 is not the chain head in manifest.json")
    return problems


def verify(folder: Path, pin_fingerprint: str | None, pin_key: Path | None) -> tuple[list[str], bool]:
    """(problems, whether the signer was pinned)."""
    manifest_bytes = (folder / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    key = serialization.load_pem_public_key((pin_key or folder / "signing-key.pub.pem").read_bytes())
    problems = []
    if pin_fingerprint and fingerprint(key) != pin_fingerprint.strip().lower():
        return [f"signing-key.pub.pem: the folder's key is {fingerprint(key)}, not {pin_fingerprint}"], True
    try:
        key.verify((folder / "manifest.sig").read_bytes(), manifest_bytes)  # the file's exact bytes are signed
    except InvalidSignature:
        problems.append("manifest.sig: does not verify over manifest.json with this key")
    if manifest.get("public_key_fingerprint") != fingerprint(key):
        problems.append("manifest.json: names another signing key")
    # An audit trail's output (format "... audit-trail manifest v1") has no evidence.jsonl: its files are checked alone.
    has_chain = "evidence_chain_head" in manifest
    chain = chain_problems((folder / "evidence.jsonl").read_bytes(), manifest["evidence_chain_head"]) if has_chain \
        else []
    problems += chain
    for name, entry in sorted(manifest["files"].items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: listed in manifest.json but missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            if not (name == "evidence.jsonl" and chain):  # the chain already said where it changed
                problems.append(f"{name}: SHA-256 does not match manifest.json")
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name not in manifest["files"] and name not in UNSIGNED:
            problems.append(f"{name}: present but not listed in manifest.json")
    return problems, bool(pin_fingerprint or pin_key)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--fingerprint")
    parser.add_argument("--public-key", type=Path)
    args = parser.parse_args()
    if not args.folder.is_dir():
        print(f"{args.folder}: not a folder")
        return 2
    problems, pinned = verify(args.folder, args.fingerprint, args.public_key)
    for problem in problems:
        print(f"MISMATCH  {problem}")
    if problems:
        return 1
    print("intact" + ("" if pinned else ", signer not verified: pass --fingerprint or --public-key"))
    return 0 if pinned else 3


if __name__ == "__main__":
    sys.exit(main())
