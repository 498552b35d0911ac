"""Key escrow: an old credential sealed to a recovery public key, so that database backups encrypted under an old key
stay readable for their retention period while no copy of the key stays readable on the host.

A sealed box, as age and libsodium build one: an ephemeral X25519 key agrees a secret with the recipient's X25519
public key; HKDF-SHA256 (salt: both public keys) derives a one-time ChaCha20-Poly1305 key that encrypts the value,
authenticating the escrow's header (credential, fingerprint, dates). An RSA recipient (2048 bits or more) gets a random
content key wrapped with RSA-OAEP-SHA256 instead. Only the recipient's private key opens it; the host keeps only the
public key, the sealed file and the value's fingerprint. Each escrow names a destruction date, after which
`rotation retire` deletes it (and `rotation status` / `rotation audit-trail` show it as due).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rotation.core.errors import RotationError
from rotation.core.secret import Secret

FORMAT = "rotation-runbook escrow v1"
SUFFIX = ".escrow.json"
NONCE = bytes(12)  # every content key encrypts exactly one value
MIN_RSA_BITS = 2048
Recipient = X25519PublicKey | rsa.RSAPublicKey


class EscrowError(RotationError, ValueError):
    """An escrow cannot be sealed or opened; the message says why (never the value)."""


@dataclass(frozen=True)
class Escrow:
    path: Path
    credential: str
    fingerprint: str  # of the sealed value
    sealed_at: dt.datetime
    destroy_after: dt.datetime
    recipient: str  # the recovery public key's fingerprint

    def due(self, now: dt.datetime) -> bool:
        return now >= self.destroy_after

    def as_evidence(self) -> dict[str, str]:
        return {"file": str(self.path), "credential": self.credential, "sealed value": self.fingerprint,
                "sealed at": _iso(self.sealed_at), "destroy after": _iso(self.destroy_after),
                "recovery key": self.recipient}


def load_recipient(path: Path) -> Recipient:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise EscrowError(f"cannot read the recovery public key {path}: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise EscrowError(f"the recovery key {path} is RSA-{key.key_size}: use X25519 or RSA-{MIN_RSA_BITS}+")
    if not isinstance(key, X25519PublicKey | rsa.RSAPublicKey):
        raise EscrowError(f"the recovery key {path} is {type(key).__name__}: use an X25519 or RSA public key")
    return key


def recipient_fingerprint(key: Recipient) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _kdf(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=ephemeral + recipient, info=FORMAT.encode()).derive(shared)


def seal(value: Secret, recipient: Recipient, *, credential: str, sealed_at: dt.datetime,
         destroy_after: dt.datetime) -> dict[str, object]:
    """The escrow record: its header in clear, the value only as ciphertext bound to that header."""
    header = {"format": FORMAT, "credential": credential, "fingerprint": value.fingerprint,
              "sealed_at": _iso(sealed_at), "destroy_after": _iso(destroy_after),
              "recipient": recipient_fingerprint(recipient)}
    aad = json.dumps(header, sort_keys=True).encode()
    if isinstance(recipient, X25519PublicKey):
        ephemeral = X25519PrivateKey.generate()
        eph_raw = _raw(ephemeral.public_key())
        key = _kdf(ephemeral.exchange(recipient), eph_raw, _raw(recipient))
        wrap = {"algorithm": "X25519-HKDF-SHA256-ChaCha20Poly1305", "ephemeral": _b64(eph_raw)}
    else:
        key = os.urandom(32)
        wrapped = recipient.encrypt(key, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
        wrap = {"algorithm": "RSA-OAEP-SHA256-ChaCha20Poly1305", "wrapped_key": _b64(wrapped)}
    sealed = ChaCha20Poly1305(key).encrypt(NONCE, value.reveal().encode(), aad)
    return {**header, **wrap, "ciphertext": _b64(sealed)}


def write(folder: Path, record: dict[str, object]) -> Escrow:
    """Write the escrow at mode 0600 in a 0700 folder (atomically, fsynced) and read it back."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fp = str(record["fingerprint"]).removeprefix("sha256:")
    path = folder / f"{record['credential']}-{fp}{SUFFIX}"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return read(path)


def read(path: Path) -> Escrow:
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise EscrowError(f"{path} is not a {FORMAT} file")
        return Escrow(path, str(data["credential"]), str(data["fingerprint"]),
                      dt.datetime.fromisoformat(data["sealed_at"]), dt.datetime.fromisoformat(data["destroy_after"]),
                      str(data["recipient"]))
    except (OSError, ValueError, KeyError) as exc:
        raise EscrowError(f"cannot read the escrow {path}: {exc}") from None


def all_in(folder: Path) -> list[Escrow]:
    return [read(p) for p in sorted(folder.glob(f"*{SUFFIX}"))] if folder.is_dir() else []


def open_escrow(path: Path, private_key_pem: bytes) -> Secret:
    """The sealed value, with the recovery private key; EscrowError for any other key or a changed file."""
    data = json.loads(path.read_text())
    header = {k: data[k] for k in ("format", "credential", "fingerprint", "sealed_at", "destroy_after", "recipient")}
    try:
        private = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise EscrowError(f"not a usable private key: {exc}") from None
    try:
        if data["algorithm"].startswith("X25519") and isinstance(private, X25519PrivateKey):
            eph = base64.b64decode(data["ephemeral"])
            key = _kdf(private.exchange(X25519PublicKey.from_public_bytes(eph)), eph, _raw(private.public_key()))
        elif data["algorithm"].startswith("RSA") and isinstance(private, rsa.RSAPrivateKey):
            key = private.decrypt(base64.b64decode(data["wrapped_key"]),
                                  padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
        else:
            raise EscrowError(f"{path.name} is sealed with {data['algorithm']}: this private key cannot open it")
        plain = ChaCha20Poly1305(key).decrypt(NONCE, base64.b64decode(data["ciphertext"]),
                                              json.dumps(header, sort_keys=True).encode())
    except (InvalidTag, ValueError) as exc:
        raise EscrowError(f"{path.name} does not open with this key (or was changed): "
                          f"{type(exc).__name__}") from None
    value = Secret(plain.decode())
    if value.fingerprint != header["fingerprint"]:
        raise EscrowError(f"{path.name}: the opened value is not {header['fingerprint']}")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
