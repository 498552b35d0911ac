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


