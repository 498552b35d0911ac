"""Looking for credentials where they must never be: the helpers the leak tests share.

Credentials are taken from the .env files and backups a run left behind (the only files meant to hold them), and
looked for in every encoding the evidence self-scan knows (raw, hex, URL, JSON, HTML, base64 at any alignment)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from rotation.core import envfile
from rotation.evidence.leaks import forms_of, scan_bytes

MEANT_TO_HOLD_SECRETS = (".env", ".env.backup.", ".rotation-pending.", "smtp-key.pem")
CREDENTIALS = ("DB_ENCRYPTION_KEY", "TWILIO_AUTH_TOKEN", "WHATSAPP_ACCESS_TOKEN", "WHATSAPP_APP_SECRET",
               "SMTP_PASSWORD")


def credentials_in(basetemp: Path) -> set[str]:
    """Every credential any .env or backup under basetemp held: the old and the new of each rotation."""
    found: set[str] = set()
    for path in basetemp.rglob(".env*"):
        if path.is_file() and (path.name == ".env" or path.name.startswith(".env.backup.")):
            values = envfile.read_env(path)
            found |= {values[name] for name in CREDENTIALS if values.get(name)}
    return found


def files_written(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.name.startswith(MEANT_TO_HOLD_SECRETS):
            yield path


def places_under(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in files_written(root)}


def assert_no_secret(places: dict[str, bytes], secrets: Iterable[str]) -> None:
    """Fail naming the place and the encoding, never the secret."""
    for secret in secrets:
        for form, encoding in forms_of(secret).items():
            for name, content in places.items():
                assert form not in content, f"a credential appears in {name} ({encoding})"


def assert_no_fragment(places: dict[str, bytes], secrets: Iterable[str]) -> None:
    """No secret, whole or as a fragment of 12 or more characters, in any encoding, anywhere: fail naming the place
    and the encoding, never the secret."""
    secrets = list(secrets)
    found = [leak.message() for name, content in places.items() for leak in scan_bytes(content, secrets, label=name)]
    assert not found, "secrets found: " + "; ".join(found)
