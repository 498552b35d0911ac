"""The app's `.env`: back it up, read it, and change one variable atomically, keeping every other line and comment."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import stat
import tempfile
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from rotation.core.secret import Secret, reveal

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


def get_secret(path: Path, name: str) -> Secret:
    return Secret(get_value(path, name))


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


# python-dotenv (which the app uses) expands ${NAME} and ${NAME:-default} in every value, quoted or not, and has no
# escape for it; inside single quotes it decodes only \\ and \'. A universal-newline read turns \r into \n.
_INTERPOLATED = re.compile(r"\$\{[^}:]*(?::-[^}]*)?\}")


def encode_value(value: Secret | str, *, name: str = "the value") -> str:
    """The .env form of a value that python-dotenv reads back exactly: single quotes, with \\ and \' escaped.
    Raises EnvFileError for a value no .env line can carry."""
    text = reveal(value)
    problems = []
    if "\r" in text or "\x00" in text:
        problems.append("a carriage return or NUL character")
    if _INTERPOLATED.search(text):
        problems.append("a ${...} sequence, which python-dotenv replaces with an environment variable")
    if problems:
        raise EnvFileError(f"{name} cannot be written to .env so that python-dotenv reads it back unchanged: it "
                           f"contains {' and '.join(problems)}; choose another value")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def set_value(path: Path, name: str, value: Secret | str) -> None:
    """Replace (or append) NAME=value: temp file in the same directory, fsync, rename; mode 0600; every other line
    kept byte for byte. The file is read back with python-dotenv and compared before this returns; on a mismatch the
    previous file is put back and EnvFileError raised."""
    encoded = encode_value(value, name=f"the new {name}")
    before = path.read_bytes()
    _write_atomically(path, _replace_binding(before.decode(), name, f"{name}={encoded}").encode())
    if read_env(path).get(name) != reveal(value):
        _write_atomically(path, before)
        raise EnvFileError(f"{name} did not read back from {path.name} as written; {path.name} was put back as it was")


def _replace_binding(text: str, name: str, assignment: str) -> str:
    """The file with the last binding of `name` replaced (python-dotenv's last one wins), or the assignment appended.
    Bindings come from python-dotenv's own parser, so quoted and multi-line values are replaced whole."""
    bindings = list(parse_stream(io.StringIO(text)))
    found = [i for i, b in enumerate(bindings) if b.key == name]
    parts = [b.original.string for b in bindings]
    if not found:
        return text + ("" if text.endswith("\n") or not text else "\n") + assignment + "\n"
    original = parts[found[-1]]
    lead = re.match(r"\s*(?:export\s+)?", original)
    parts[found[-1]] = (lead.group(0) if lead else "") + assignment + "\n"
    return "".join(parts)


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
