"""The runbook's "Troubleshooting" cases as diagnoses and repairs. Findings name lines, rows, columns and fingerprints;
never a credential or a line's content."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Mapping
from pathlib import Path

from dotenv.parser import parse_stream

from rotation.core import envfile

# --- the app won't start: .env syntax ---------------------------------------------------------------------------


def env_syntax_errors(path: Path) -> list[int]:
    """Line numbers python-dotenv cannot parse. (The runbook's `load_dotenv(); print('OK')` prints OK regardless:
    python-dotenv only logs a warning and drops the line, so the app starts without that setting.)"""
    text = path.read_text()
    return [binding.original.line for binding in parse_stream(io.StringIO(text)) if binding.error]


def restore_newest_backup(env_file: Path) -> Path:
    """The runbook's `cp .env.backup.YYYYMMDD .env` with the newest backup, atomically and at mode 0600."""
    found = envfile.backups(env_file)
    if not found:
        raise envfile.EnvFileError(f"no backup of {env_file.name} beside it: nothing to restore")
    envfile.restore(found[0], env_file)
    return found[0]


# --- decryption fails after a key rotation: see rotation.troubleshooting.decryption ----------------------------


# --- API calls fail after a token rotation: did the app reload? -----------------------------------------------------

TOKEN_FORMATS: Mapping[str, tuple[str, str]] = {
    # .env variable: (regular expression the whole value must match, what it means)
    "TWILIO_AUTH_TOKEN": (r"[0-9a-f]{32}", "32 hexadecimal digits"),
    "WHATSAPP_ACCESS_TOKEN": (r"[A-Za-z0-9_\-]{32,}", "32 or more URL-safe characters"),
}


def token_typos(name: str, value: str) -> list[str]:
    """What looks mistyped in a credential (quotes, spaces, line ends, the provider's format), never the value."""
    problems = []
    if value != value.strip():
        problems.append(f"{name} has leading or trailing whitespace")
    if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]:
        problems.append(f"{name} is wrapped in quotes that became part of the value")
    if any(not c.isprintable() for c in value):
        problems.append(f"{name} holds a non-printable character")
    pattern, meaning = TOKEN_FORMATS.get(name, (r".+", "non-empty"))
    if not re.fullmatch(pattern, value):
        problems.append(f"{name} is not {meaning} ({len(value)} characters)")
    return problems


def app_config_is_stale(env_loaded_at: float | None, env_file: Path) -> bool:
    """True when the running app loaded its configuration before .env last changed (it was never reloaded)."""
    if env_loaded_at is None:
        return True
    return float(env_loaded_at) < env_file.stat().st_mtime


def describe_mtime(path: Path) -> str:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).isoformat(timespec="seconds")
