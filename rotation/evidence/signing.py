"""manifest.json (SHA-256 of every artifact) and its Ed25519 signature, verifiable offline with this package or
`openssl pkeyutl -verify -pubin -inkey signing-key.pub.pem -rawin -in manifest.json -sigfile manifest.sig`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rotation.core.errors import RotationError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "signing-key.pub.pem"
UNSIGNED = frozenset({MANIFEST, SIGNATURE})  # the only files the manifest cannot list


class SigningKeyError(RotationError, ValueError):
    """The configured signing key cannot be used. The message names the file, never its content."""


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"signing key {path} cannot be read as an unencrypted PEM private key "
                              f"({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"signing key {path} is not an Ed25519 key")
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


FINGERPRINT_PREFIX = "ed25519:sha256:"


def public_fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the key's DER SubjectPublicKeyInfo (the 44 bytes inside the PEM), in full, so an auditor gets the
    same hex from `openssl pkey -pubin -in signing-key.pub.pem -outform DER | openssl dgst -sha256`."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return FINGERPRINT_PREFIX + hashlib.sha256(der).hexdigest()


def normalise_fingerprint(text: str) -> str:
    """A pin as the operator may paste it: with or without the prefix, openssl's `SHA2-256(stdin)= ...`, colons."""
    value = text.strip().lower()
    if "=" in value:
        value = value.rsplit("=", 1)[1].strip()
    value = value.removeprefix(FINGERPRINT_PREFIX).removeprefix("sha256:").replace(":", "")
    return FINGERPRINT_PREFIX + value


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is not an Ed25519 public key")
    return key


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


RUN_FORMAT = "rotation-runbook evidence manifest v1"
AUDIT_TRAIL_FORMAT = "rotation-runbook audit-trail manifest v1"


def build_manifest(folder: Path, extra: dict[str, object], kind: str = RUN_FORMAT) -> dict[str, object]:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name not in UNSIGNED:
            files[name] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    return {"format": kind, **extra, "files": files}


def write_signed_manifest(folder: Path, key: Ed25519PrivateKey, extra: dict[str, object],
                          kind: str = RUN_FORMAT) -> dict[str, object]:
    manifest = build_manifest(folder, extra, kind)
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (folder / MANIFEST).write_bytes(data)
    (folder / SIGNATURE).write_bytes(key.sign(data))
    return manifest


def seal_folder(folder: Path, key: Ed25519PrivateKey | None, extra: dict[str, object], kind: str) -> str:
    """Sign a folder of evidence the way a run folder is signed (its public key, manifest.json, manifest.sig), with
    the configured key or, without one, a per-run key that lives only in memory. Returns the signer's fingerprint."""
    signer = key or Ed25519PrivateKey.generate()
    for stale in (MANIFEST, SIGNATURE):
        (folder / stale).unlink(missing_ok=True)
    (folder / PUBLIC_KEY).write_text(public_pem(signer.public_key()), encoding="utf-8")
    fingerprint = public_fingerprint(signer.public_key())
    write_signed_manifest(folder, signer, {**extra, "public_key_fingerprint": fingerprint}, kind)
    return fingerprint
