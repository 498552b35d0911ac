"""Offline verification of a run folder: the hash chain, every file against manifest.json, and the Ed25519
signature over the manifest, against a signer the auditor pins (a fingerprint or a public key obtained independently
of the folder). Without a pin the folder can only be shown intact: anyone can rebuild a folder and sign it with a key
of their own, so `signer_verified` stays False and the command says what to pin."""

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
    normalise_fingerprint,
    public_fingerprint,
)


@dataclass
class Verification:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signer_verified: bool = False  # the signature is by the key the auditor pinned
    signer_fingerprint: str | None = None  # the key that made the signature (when it verifies)

    @property
    def passed(self) -> bool:
        """The folder is intact: every file, the chain and the signature match (whoever signed it)."""
        return not self.problems


@dataclass(frozen=True)
class Pin:
    """Who the auditor expects to have signed: a key file they hold, or a fingerprint from a trusted record."""

    public_key: Path | None = None
    fingerprint: str | None = None

    @property
    def given(self) -> bool:
        return self.public_key is not None or self.fingerprint is not None


def _load(path: Path, result: Verification) -> Ed25519PublicKey | None:
    try:
        return load_public_key(path)
    except (OSError, ValueError, SigningKeyError) as exc:
        result.problems.append(f"public key {path}: cannot be loaded ({type(exc).__name__})")
        return None


def _signature(folder: Path, manifest_bytes: bytes, manifest: dict[str, object], pin: Pin,
               result: Verification) -> None:
    key = _load(pin.public_key or folder / PUBLIC_KEY, result)
    if key is None:
        return
    fingerprint = public_fingerprint(key)
    pinned = pin.public_key is not None
    if pin.fingerprint is not None:
        wanted = normalise_fingerprint(pin.fingerprint)
        if fingerprint != wanted:
            result.problems.append(f"{PUBLIC_KEY}: the folder's key is {fingerprint}, not the pinned signer {wanted}")
            return
        pinned = True
    if manifest.get("public_key_fingerprint") != fingerprint:
        result.problems.append(f"{MANIFEST}: names signing key {manifest.get('public_key_fingerprint')}, but the key "
                               f"used to verify is {fingerprint}")
    try:
        key.verify((folder / SIGNATURE).read_bytes(), manifest_bytes)
    except FileNotFoundError:
        result.problems.append(f"{SIGNATURE}: missing")
        return
    except InvalidSignature:
        who = "the pinned key" if pinned else "the key shipped in the folder"
        result.problems.append(f"{SIGNATURE}: does not verify with {who} ({fingerprint}): {MANIFEST} was changed "
                               "or signed by another key")
        return
    result.signer_fingerprint = fingerprint
    result.signer_verified = pinned
    if pinned:
        result.ok.append(f"{SIGNATURE}: valid Ed25519 signature over {MANIFEST} by the pinned signer {fingerprint}")
    else:
        result.ok.append(f"{SIGNATURE}: valid Ed25519 signature over {MANIFEST} by the key shipped in the folder "
                         f"({fingerprint})")
        result.notes.append(f"signer not verified: anyone can re-sign a folder with a key of their own and ship it. "
                            f"Pin the signer: --fingerprint {fingerprint} if that is the fingerprint your records "
                            f"(the run's output, the change ticket, the key registry) hold, or --public-key FILE "
                            f"with the key you obtained from its owner")


def _files(folder: Path, manifest: dict[str, object], result: Verification, *, chain_explained: bool) -> None:
    listed: dict[str, dict[str, object]] = manifest.get("files", {})  # type: ignore[assignment]
    for name, entry in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            result.problems.append(f"{name}: listed in {MANIFEST} but missing")
        elif file_sha256(path) != entry.get("sha256"):
            if not (name == CHAIN and chain_explained):  # the chain's own finding says where it changed
                result.problems.append(f"{name}: SHA-256 does not match {MANIFEST} (the file was changed)")
        else:
            result.ok.append(f"{name}: SHA-256 matches")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    for name in sorted(present - set(listed) - UNSIGNED):
        result.problems.append(f"{name}: present but not listed in {MANIFEST} (added after signing)")


def _chain(folder: Path, manifest: dict[str, object], result: Verification) -> bool:
    """Check the chain; True when it found (and reported) what changed in evidence.jsonl."""
    if not (folder / CHAIN).is_file():
        return False
    head, problems = verify_chain(folder / CHAIN)
    result.problems += problems
    if problems:
        return True
    if head is not None and head != manifest.get("evidence_chain_head"):
        expected = manifest.get("evidence_lines")
        count = sum(1 for _ in (folder / CHAIN).open("rb"))
        detail = (f"{CHAIN} has {count} lines where {MANIFEST} signed {expected}" if isinstance(expected, int)
                  and expected != count else f"line {count} (the last) was changed")
        result.problems.append(f"{CHAIN}: the last line's hash does not match the chain head in {MANIFEST}: {detail}")
        return True
    result.ok.append(f"{CHAIN}: hash chain intact, head {head}")
    return False


def verify_folder(folder: Path, public_key: Path | None = None, *, fingerprint: str | None = None) -> Verification:
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
    _signature(folder, manifest_bytes, manifest, Pin(public_key, fingerprint), result)
    explained = _chain(folder, manifest, result)
    _files(folder, manifest, result, chain_explained=explained)
    return result
