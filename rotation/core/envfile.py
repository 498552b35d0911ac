"""The app's `.env`: back it up, read it, and change one variable atomically, keeping every other line and comment."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
import tempfile
from pathlib import Path

from dotenv import dotenv_values

SECURE_MODE = 0o600


class EnvFileError(RuntimeError):
    """The .env file is missing, unreadable, or not as the runbook requires. Never carries a value."""


def read_env(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise EnvFileError(f"{path} does not exist: pass --env-file with the app's .env")
    return {k: v or "" for k, v in dotenv_values(path).items()}


def get_value(path: Path, name: str) -> str:
    value = read_env(path).get(name, "")
    if not value:
        raise EnvFileError(f"{name} is not set in {path}")
    return value


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def backup_path_for(path: Path, day: dt.date) -> Path:
    """The runbook's `cp .env .env.backup.$(date +%Y%m%d)`."""
    return path.with_name(f"{path.name}.backup.{day:%Y%m%d}")


def backup(path: Path, today: dt.date | None = None) -> Path:
    """Copy .env to .env.backup.YYYYMMDD with mode 0600. A second backup on the same day keeps the first
    (it holds the oldest credentials of the day, which a rollback needs) and writes .N after it."""
    read_env(path)
    base = backup_path_for(path, today or dt.datetime.now(dt.UTC).date())
    target, n = base, 1
    while target.exists():
        if target.read_bytes() == path.read_bytes():
            return target
        target, n = base.with_name(f"{base.name}.{n}"), n + 1
    _write_atomically(target, path.read_bytes())
    return target


def backups(path: Path) -> list[Path]:
    """Every backup of this .env, newest first (by modification time, then name)."""
    found = [p for p in path.parent.glob(f"{path.name}.backup.*") if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)


def set_value(path: Path, name: str, value: str) -> None:
    """Replace (or append) NAME=value: temp file in the same directory, fsync, rename; mode 0600; comments kept."""
    if "\n" in value or "\r" in value:
        raise EnvFileError(f"the new value of {name} contains a line break")
    text = path.read_text()
    line = f"{name}={value}"
    pattern = re.compile(rf"^(export\s+)?{re.escape(name)}\s*=.*$", re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda m: (m.group(1) or "") + line, text, count=1)
    else:
        text = text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
    _write_atomically(path, text.encode())


def restore(backup_file: Path, path: Path) -> None:
    """The runbook's `cp .env.backup.YYYYMMDD .env`, done atomically and at mode 0600."""
    _write_atomically(path, backup_file.read_bytes())


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, SECURE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            st = path.stat()
            try:  # keep the owner the operator set (runbook: chown eventuser:eventuser .env)
                os.chown(tmp, st.st_uid, st.st_gid)
            except PermissionError:
                pass
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
