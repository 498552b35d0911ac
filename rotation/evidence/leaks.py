"""Secret-leak self-scan: every registered secret is looked for in every artifact, in the encodings a secret
commonly takes on its way into a file (raw, base64 at any byte alignment, hex, URL, JSON and HTML escaping), whole
and as any fragment of MIN_FRAGMENT (12) characters or more: a truncated repr in an assertion message or a
traceback shows 40 of a key's 43 characters, which is a leak too. Findings name the file and the encoding, never the
secret."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit

from rotation.core.database import dsn_password
from rotation.core.envfile import EnvFileError, read_env
from rotation.core.secret import fingerprint

REDACTION = b"[REDACTED]"


MIN_FRAGMENT = 12  # characters of the secret; shorter runs of a random secret match by chance too often

# --- every secret the run touches, known to the scan from the session's start ------------------------------------
# A setting of the app's .env is a secret when its name ends like one (DB_ENCRYPTION_KEY, TWILIO_AUTH_TOKEN,
# SMTP_PASSWORD, SECRET_KEY); any value that is a URL or DSN with a password (DATABASE_URL) gives its password.
SECRET_SETTING = re.compile(r"(?:^|_)(?:KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASS|PWD|PASSPHRASE|CREDENTIALS?)$",
                            re.IGNORECASE)
PUBLIC_SETTING = re.compile(r"PUBLIC|PUBLISHABLE", re.IGNORECASE)  # STRIPE_PUBLISHABLE_KEY, JWT_PUBLIC_KEY
# A shorter value is masked at its source but not searched for: it would match ordinary words ("changeme" is 8).
MIN_SCANNED = 8


def password_in(value: str) -> str | None:
    """The password of a URL (postgresql://u:pw@h/db, redis://:pw@h) or a key=value DSN, else None."""
    if "://" in value:
        try:
            found = urlsplit(value.strip()).password
        except ValueError:
            found = None
        if found:
            return found
    return dsn_password(value) if "=" in value or "://" in value else None


def env_file_secrets(path: Path | str, names: Iterable[str] = ()) -> list[str]:
    """Every secret the app's .env holds: the values of secret-looking settings (and of `names`, the credentials the
    configuration rotates), and the password of any DSN-valued setting. An unreadable file gives none: the run's own
    checks report it."""
    wanted = set(names)
    try:
        values = read_env(Path(path))
    except (OSError, EnvFileError, ValueError):
        return []
    found = [v for k, v in values.items()
             if k in wanted or (SECRET_SETTING.search(k) and not PUBLIC_SETTING.search(k))]
    found += [p for v in values.values() if (p := password_in(v))]
    return found


def run_secrets(*, dsns: Iterable[str | None] = (), env_files: Iterable[Path | str | None] = (),
                environ: Mapping[str, str] | None = None, names: Iterable[str] = ()) -> list[str]:
    """What a session registers before anything runs: the DSNs' passwords, PGPASSWORD, every secret of the .env
    files, each at least MIN_SCANNED characters long, once."""
    environ = environ or {}
    found = [p for d in dsns if d and (p := password_in(d))]
    found += [environ[n] for n in ("PGPASSWORD",) if environ.get(n)]
    found += [p for n in ("ROTATION_DSN", "DATABASE_URL") if (p := password_in(environ.get(n) or ""))]
    names = list(names)
    for env_file in env_files:
        if env_file:
            found += env_file_secrets(env_file, names)
    return list(dict.fromkeys(s for s in found if len(s) >= MIN_SCANNED))


@dataclass(frozen=True)
class Leak:
    file: str
    form: str
    secret_fingerprint: str
    fragment: bool = False  # only part of the secret (MIN_FRAGMENT characters or more), e.g. a truncated repr

    def message(self) -> str:
        part = f", a fragment of {MIN_FRAGMENT} or more characters" if self.fragment else ""
        return f"{self.file} contains a registered secret ({self.form} form{part}, {self.secret_fingerprint})"


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


# --- fragments ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Encoded:
    """One encoded form of one secret, and how long a fragment of it is (the encoding of MIN_FRAGMENT characters)."""

    secret: int  # index into the secrets scanned
    form: str
    text: bytes
    length: int

    def windows(self) -> list[bytes]:
        if len(self.text) <= self.length:
            return [self.text]
        return [self.text[i:i + self.length] for i in range(len(self.text) - self.length + 1)]


def _encodings(index: int, secret: str) -> list[_Encoded]:
    raw = secret.encode("utf-8")
    found = [_Encoded(index, "raw", raw, MIN_FRAGMENT)]
    found += [_Encoded(index, "hex", t, 2 * MIN_FRAGMENT) for t in (raw.hex().encode(), raw.hex().upper().encode())]
    found += [_Encoded(index, name, t, MIN_FRAGMENT) for t, name in (
        (quote(secret, safe="").encode(), "URL-encoded"), (quote_plus(secret).encode(), "URL-encoded"),
        (json.dumps(secret)[1:-1].encode(), "JSON-escaped"), (html.escape(secret).encode(), "HTML-escaped"))
        if t != raw]
    # base64 of MIN_FRAGMENT bytes leaves at least 15 characters determined by those bytes alone, at any alignment
    found += [_Encoded(index, "base64", t, 14) for t in _base64_forms(raw)]
    return [e for e in found if len(e.text) >= 4]


class _FragmentIndex:
    """Every encoded form of every secret, indexed by its n-grams (n = half a fragment), so that one pass over a file
    finds any fragment: a run of `length` characters always covers an n-gram starting at a multiple of n."""

    def __init__(self, secrets: list[str]) -> None:
        self.grams: dict[int, dict[bytes, list[_Encoded]]] = {}
        for index, secret in enumerate(secrets):
            for encoded in _encodings(index, secret):
                n = max(2, min(encoded.length, len(encoded.text)) // 2)
                table = self.grams.setdefault(n, {})
                for i in range(len(encoded.text) - n + 1):
                    table.setdefault(encoded.text[i:i + n], []).append(encoded)

    def found(self, data: bytes) -> dict[int, str]:
        """Secret index -> the encoding of the first fragment of it found in data."""
        hits: dict[int, str] = {}
        for n, table in self.grams.items():
            for i in range(0, len(data) - n + 1, n):
                for encoded in table.get(data[i:i + n], ()):
                    if encoded.secret in hits:
                        continue
                    around = data[max(0, i - encoded.length):i + n + encoded.length]
                    if any(window in around for window in encoded.windows()):
                        hits[encoded.secret] = encoded.form
        return hits


def scan_bytes(data: bytes, secrets: Iterable[str], *, label: str) -> list[Leak]:
    """Whole forms first (named by their encoding), then fragments of MIN_FRAGMENT characters or more."""
    secrets = list(secrets)
    leaks: list[Leak] = []
    missing: list[int] = []
    for index, secret in enumerate(secrets):
        whole = next((form for pattern, form in forms_of(secret).items() if pattern in data), None)
        if whole:
            leaks.append(Leak(label, whole, fingerprint(secret)))
        else:
            missing.append(index)
    if missing:
        fragments = _FragmentIndex([secrets[i] for i in missing]).found(data)
        leaks += [Leak(label, form, fingerprint(secrets[missing[i]]), fragment=True) for i, form in fragments.items()]
    return leaks


def scan_file(path: Path, secrets: Iterable[str], *, label: str | None = None) -> list[Leak]:
    return scan_bytes(path.read_bytes(), secrets, label=label or path.name)


def scan_tree(root: Path, secrets: Iterable[str]) -> list[Leak]:
    secrets = list(secrets)
    leaks: list[Leak] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        leaks.extend(scan_file(path, secrets, label=str(path.relative_to(root))))
    return leaks


def redact_bytes(data: bytes, secrets: Iterable[str]) -> bytes:
    """Every whole form, then every fragment window, of every secret replaced (what remains of a secret is shorter
    than MIN_FRAGMENT characters)."""
    for index, secret in enumerate(secrets):
        for pattern in sorted(forms_of(secret), key=len, reverse=True):
            data = data.replace(pattern, REDACTION)
        for encoded in _encodings(index, secret):
            for window in encoded.windows():
                data = data.replace(window, REDACTION)
    return data


def redact_text(text: str, secrets: Iterable[str]) -> str:
    return redact_bytes(text.encode("utf-8"), secrets).decode("utf-8", errors="replace")


def redact_file(path: Path, secrets: Iterable[str]) -> None:
    """Overwrite every form of every secret in place, so a leak found at the end does not stay on disk."""
    path.write_bytes(redact_bytes(path.read_bytes(), secrets))


class SecretScanner:
    """Scan and redact many small texts for the same secrets (the terminal output, line by line): the fragment index
    is built once per set of secrets."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._index: _FragmentIndex | None = None

    def redact(self, text: str, secrets: tuple[str, ...]) -> tuple[str, list[Leak]]:
        """The text with every whole form and fragment of the secrets replaced, and what was found."""
        if not secrets or not text:
            return text, []
        if secrets != self._secrets:
            self._secrets, self._index = secrets, _FragmentIndex(list(secrets))
        data = text.encode("utf-8", errors="replace")
        # every whole form contains a fragment window (a secret shorter than a fragment is its own window)
        found = scan_bytes(data, secrets, label="the terminal output") if self._index and self._index.found(data) \
            else []
        return (redact_text(text, secrets) if found else text), found
