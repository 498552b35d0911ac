"""The app's `.env` as operators keep it: back it up, read it, and change one variable atomically, keeping every
other line and comment.

What the app reads is python-dotenv's view of the file (UTF-8, universal newlines, last binding of a name wins), so
that is what this module reads and checks every write against. As operators keep it:
    symlink          (configuration management) written through to its target, which the app reads; the link stays
    non-UTF-8 bytes  refused with the line and offset (python-dotenv cannot read the file either), never rewritten
    CRLF endings     kept: a replaced line ends as it did
    duplicate names  every binding of the name is replaced (python-dotenv reads the last; no stale copy is left)
    `export` lines   the `export ` prefix is kept
    inline comments  kept after the new value
    mode             written at 0600; a file found more open is reported (`EnvWrite.mode_found`) for the evidence
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from rotation.core.errors import RotationError
from rotation.core.secret import Secret, reveal

SECURE_MODE = 0o600


class EnvFileError(RotationError, RuntimeError):
    """The .env file is missing, unreadable, or not as the runbook requires. Never carries a value."""


@dataclass(frozen=True)
class EnvWrite:
    """What a write did to the file, for the evidence (no value)."""

    path: Path          # the .env the operator named
    written: Path       # the file written: the link's target when .env is a symlink
    mode_found: int
    mode_set: int

    @property
    def symlink(self) -> bool:
        return self.written != self.path

    @property
    def was_too_open(self) -> bool:
        return bool(self.mode_found & ~SECURE_MODE & 0o777)

    def as_evidence(self) -> dict[str, object]:
        return {"file written": str(self.written), "symlink kept": self.symlink,
                "mode found": oct(self.mode_found), "mode set": oct(self.mode_set)}

    def warning(self) -> str | None:
        if not self.was_too_open:
            return None
        return (f"WARNING: {self.path} had mode {oct(self.mode_found)} (readable or writable by others than its "
                f"owner); it is {oct(self.mode_set)} now")


def read_text(path: Path) -> str:
    """The file's text as python-dotenv would read it, or EnvFileError saying why it cannot be (never its bytes)."""
    if not path.exists():
        raise EnvFileError(f"{path} does not exist: pass --env-file with the app's .env")
    if not path.is_file():
        raise EnvFileError(f"{path} is not a regular file (or a link to one): pass --env-file with the app's .env")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EnvFileError(f"{path} cannot be read ({exc.strerror}): run as the user that owns it, or give this "
                           "user read access") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise EnvFileError(f"{path} is not UTF-8 (a byte that is not UTF-8 at line {line}, byte {exc.start} of "
                           "the file): python-dotenv, which the app reads it with, cannot read it either; fix that "
                           "line (nothing was changed)") from None


def read_env(path: Path) -> dict[str, str]:
    text = read_text(path).replace("\r\n", "\n").replace("\r", "\n")  # python-dotenv opens it in text mode
    return {k: v or "" for k, v in dotenv_values(stream=io.StringIO(text)).items()}


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


def real_path(path: Path) -> Path:
    """The file a write must replace: the target of a symlinked .env (the app reads through the link)."""
    return path.resolve(strict=True) if path.is_symlink() else path


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


def set_value(path: Path, name: str, value: Secret | str) -> EnvWrite:
    """Replace (or append) NAME=value: temp file in the same directory, fsync, rename; mode 0600; every other line
    kept byte for byte. A symlinked .env is written through to its target and stays a link. The file is read back
    with python-dotenv and compared before this returns; on a mismatch the previous file is put back and EnvFileError
    raised."""
    encoded = encode_value(value, name=f"the new {name}")
    text = read_text(path)
    target = real_path(path)
    found = file_mode(target)
    before = text.encode()
    _write_atomically(target, _replace_binding(text, name, f"{name}={encoded}").encode())
    if read_env(path).get(name) != reveal(value):
        _write_atomically(target, before)
        raise EnvFileError(f"{name} did not read back from {path.name} as written; {path.name} was put back as it was")
    return EnvWrite(path, target, found, file_mode(target))


def _replace_binding(text: str, name: str, assignment: str) -> str:
    """The file with every binding of `name` replaced (python-dotenv reads the last; none keeps a stale value), or
    the assignment appended. Bindings come from python-dotenv's own parser, so quoted and multi-line values are
    replaced whole; each keeps its `export ` prefix, its inline comment and its line ending."""
    bindings = list(parse_stream(io.StringIO(text)))
    found = [i for i, b in enumerate(bindings) if b.key == name]
    parts = [b.original.string for b in bindings]
    if not found:
        ending = "\r\n" if "\r\n" in text else "\n"
        return text + ("" if text.endswith(("\n", "\r")) or not text else ending) + assignment + ending
    for i in found:
        original = parts[i]
        lead = re.match(r"\s*(?:export\s+)?", original)
        body = original.rstrip("\r\n")
        ending = original[len(body):] or ("\r\n" if "\r\n" in text else "\n")
        parts[i] = (lead.group(0) if lead else "") + assignment + _inline_comment(body, name) + ending
    return "".join(parts)


def _inline_comment(binding: str, name: str) -> str:
    """The binding's trailing ` # comment`, if any: the leftmost `<space>#` after which python-dotenv reads the same
    value without the rest (inside quotes it is part of the value)."""
    value = _parsed_value(binding, name)
    for match in re.finditer(r"[ \t]+#", binding):
        if _parsed_value(binding[:match.start()], name) == value:
            return binding[match.start():]
    return ""


def _parsed_value(text: str, name: str) -> str | None:
    bindings = [b for b in parse_stream(io.StringIO(text)) if b.key == name and not b.error]
    return bindings[-1].value if len(bindings) == 1 else None


def restore(backup_file: Path, path: Path) -> EnvWrite:
    """The runbook's `cp .env.backup.YYYYMMDD .env`, done atomically and at mode 0600 (through a symlink)."""
    target = real_path(path)
    found = file_mode(target)
    _write_atomically(target, backup_file.read_bytes())
    return EnvWrite(path, target, found, file_mode(target))


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        _replace_file(path, data)
    except OSError as exc:
        raise EnvFileError(f"{path} cannot be written ({exc.strerror}): its directory {path.parent} must be writable "
                           "by this user (the file is replaced by a rename); nothing was changed") from None


def _replace_file(path: Path, data: bytes) -> None:
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
