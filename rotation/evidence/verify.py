"""Offline verification of a run folder: the hash chain, every file against manifest.json, and the Ed25519
signature over the manifest (against a public key the auditor holds, or the one shipped in the folder)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rotation.evidence.chain import verify_chain
from rotation.evidence.report import CHAIN
from rotation.evidence.signing import (
    MANIFEST,
    PUBLIC_KEY,
    SIGNATURE,
    UNSIGNED,
    SigningKeyError,
    file_sha256,
    load_public_key,
    public_fingerprint,
)


@dataclass
class Verification:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def _signature(folder: Path, manifest_bytes: bytes, manifest: dict[str, object], public_key: Path | None,
               result: Verification) -> None:
    key_path = public_key or folder / PUBLIC_KEY
    try:
        key: Ed25519PublicKey = load_public_key(key_path)
    except (OSError, ValueError, SigningKeyError) as exc:
        result.problems.append(f"public key {key_path}: cannot be loaded ({type(exc).__name__})")
        return
    if public_key is None:
        result.notes.append(f"signature checked against the key shipped in the folder ({PUBLIC_KEY}); pass "
                            "--public-key with a key you obtained independently to prove who signed")
    fingerprint = public_fingerprint(key)
    if manifest.get("public_key_fingerprint") != fingerprint:
        result.problems.append(f"{MANIFEST}: names signing key {manifest.get('public_key_fingerprint')}, but the key "
                               f"used to verify is {fingerprint}")
    try:
        key.verify((folder / SIGNATURE).read_bytes(), manifest_bytes)
        result.ok.append(f"{SIGNATURE}: valid Ed25519 signature over {MANIFEST} by {fingerprint}")
    except FileNotFoundError:
        result.problems.append(f"{SIGNATURE}: missing")
    except InvalidSignature:
        result.problems.append(f"{SIGNATURE}: does not verify: {MANIFEST} was changed or signed by another key")


def _files(folder: Path, manifest: dict[str, object], result: Verification) -> None:
    listed: dict[str, dict[str, object]] = manifest.get("files", {})  # type: ignore[assignment]
    for name, entry in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            result.problems.append(f"{name}: listed in {MANIFEST} but missing")
        elif file_sha256(path) != entry.get("sha256"):
            result.problems.append(f"{name}: SHA-256 does not match {MANIFEST} (the file was changed)")
        else:
            result.ok.append(f"{name}: SHA-256 matches")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    for name in sorted(present - set(listed) - UNSIGNED):
        result.problems.append(f"{name}: present but not listed in {MANIFEST} (added after signing)")


def _chain(folder: Path, manifest: dict[str, object], result: Verification) -> None:
    head, problems = verify_chain(folder / CHAIN)
    result.problems += problems
    if head is not None and head != manifest.get("evidence_chain_head"):
        result.problems.append(f"{CHAIN}: last line's hash does not match the chain head in {MANIFEST}")
    elif not problems:
        result.ok.append(f"{CHAIN}: hash chain intact, head {head}")


def verify_folder(folder: Path, public_key: Path | None = None) -> Verification:
    result = Verification()
    try:
        manifest_bytes = (folder / MANIFEST).read_bytes()
        manifest = json.loads(manifest_bytes)
    except (OSError, ValueError) as exc:
        result.problems.append(f"{MANIFEST}: cannot be read ({type(exc).__name__})")
        return result
    if not isinstance(manifest, dict):
        result.problems.append(f"{MANIFEST}: not a JSON object")
        return result
    _signature(folder, manifest_bytes, manifest, public_key, result)
    _files(folder, manifest, result)
    _chain(folder, manifest, result)
    return result
