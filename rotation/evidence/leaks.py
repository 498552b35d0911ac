"""Secret-leak self-scan: every registered secret is looked for in every artifact, in the encodings a secret
commonly takes on its way into a file (raw, base64 at any byte alignment, hex, URL, JSON and HTML escaping).
Findings name the file and the encoding, never the secret."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from rotation.core.secret import fingerprint

REDACTION = b"[REDACTED]"


@dataclass(frozen=True)
class Leak:
    file: str
    form: str
    secret_fingerprint: str

    def message(self) -> str:
        return f"{self.file} contains a registered secret ({self.form} form, {self.secret_fingerprint})"


def _base64_forms(raw: bytes) -> list[bytes]:
    """The base64 text that stands for `raw` wherever it sits in a larger blob: for each of the three byte
    alignments, only the characters determined by the secret's bytes alone."""
    forms = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).rstrip(b"=")
        start = math.ceil(shift * 8 / 6)
        end = ((shift + len(raw)) * 8) // 6  # characters fully inside the secret's bits
        core = encoded[start:end]
        forms.append(core)
        forms.append(core.replace(b"+", b"-").replace(b"/", b"_"))  # url-safe alphabet
    return forms


def forms_of(secret: str) -> dict[bytes, str]:
    """Byte patterns to look for, each mapped to the name of its encoding."""
    raw = secret.encode("utf-8")
    forms: dict[bytes, str] = {}
    for pattern, name in (
        (raw, "raw"),
        (raw.hex().encode(), "hex"),
        (raw.hex().upper().encode(), "hex"),
        (quote(secret, safe="").encode(), "URL-encoded"),
        (quote_plus(secret).encode(), "URL-encoded"),
        (json.dumps(secret)[1:-1].encode(), "JSON-escaped"),
        (html.escape(secret).encode(), "HTML-escaped"),
        *((p, "base64") for p in _base64_forms(raw)),
    ):
        if len(pattern) >= 4:  # a shorter fragment would match by chance in any file
            forms.setdefault(pattern, name)
    return forms


def scan_file(path: Path, secrets: Iterable[str], *, label: str | None = None) -> list[Leak]:
    data = path.read_bytes()
    leaks = []
    for secret in secrets:
        for pattern, form in forms_of(secret).items():
            if pattern in data:
                leaks.append(Leak(label or path.name, form, fingerprint(secret)))
                break  # one finding per secret and file is enough to fail the run
    return leaks


def scan_tree(root: Path, secrets: Iterable[str]) -> list[Leak]:
    secrets = list(secrets)
    leaks: list[Leak] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        leaks.extend(scan_file(path, secrets, label=str(path.relative_to(root))))
    return leaks


def redact_bytes(data: bytes, secrets: Iterable[str]) -> bytes:
    for secret in secrets:
        for pattern in sorted(forms_of(secret), key=len, reverse=True):
            data = data.replace(pattern, REDACTION)
    return data


def redact_text(text: str, secrets: Iterable[str]) -> str:
    return redact_bytes(text.encode("utf-8"), secrets).decode("utf-8", errors="replace")


def redact_file(path: Path, secrets: Iterable[str]) -> None:
    """Overwrite every form of every secret in place, so a leak found at the end does not stay on disk."""
    path.write_bytes(redact_bytes(path.read_bytes(), secrets))
