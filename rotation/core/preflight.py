"""What every procedure checks before its first change, as typed findings: each says what was checked, what was found
and, when it does not hold, the fix. Nothing here changes anything the app or its data depend on; every database
privilege is read from the catalog (a statement refused for want of a privilege writes an ERROR line to the server
log, which log monitoring pages on).

    signing key     Ed25519, readable, unencrypted, and usable: it signs a probe and the signature verifies
    reports folder  writable (a file is created, written, fsynced and removed) with room for a run folder
    .env            readable and writable where it really is (the target of a symlink), its directory too
    database        reachable (else one finding, in libpq's words); TEMP on the database (keys travel through a
                    session temp table), EXECUTE on the pgcrypto functions the procedures use
    app             the commands and health endpoint the later steps run

A procedure composes these with its own (rotation.db_key.readiness) into one `Preflight`, records it as evidence and
refuses, naming every finding that does not hold and its fix, before anything changes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from rotation.core.app_control import AppCommands
from rotation.core.database import UNREACHABLE_FIX, DatabaseUnreachable, libpq_said
from rotation.core.lock import RunLock
from rotation.core.proof import CheckFailed

# A run folder is evidence, reports and copies of JUnit/cucumber: well under a megabyte for a rotation (its figures
# are per table, not per row). The reports folder must have this much free, with margin for the run's journal.
REPORTS_ROOM = 8 * 1024 * 1024
PROBE = b"rotation-runbook preflight: the signing key signs"

# The pgcrypto functions the rotation's SQL calls (re-encryption, digests, the sweep's armored values).
PGCRYPTO_FUNCTIONS = ("pgp_sym_encrypt(text,text,text)", "pgp_sym_decrypt(bytea,text)",
                      "pgp_sym_decrypt_bytea(bytea,text)", "dearmor(text)", "hmac(text,text,text)",
                      "hmac(bytea,bytea,text)", "digest(text,text)", "digest(bytea,text)")


@dataclass(frozen=True)
class Finding:
    """One thing checked before the first change. `found` and `fix` never hold a secret."""

    check: str
    ok: bool
    found: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.check}: {self.found}" + ("" if self.ok else f" -> fix: {self.fix}")


@dataclass(frozen=True)
class Preflight:
    findings: tuple[Finding, ...]

    @property
    def refusals(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.ok)

    @property
    def ok(self) -> bool:
        return not self.refusals

    def as_evidence(self) -> dict[str, object]:
        return {"checked": len(self.findings), "refused": len(self.refusals),
                "findings": {f.check: ("ok: " if f.ok else "REFUSED: ") + f.found + ("" if f.ok else f" (fix: {f.fix})")
                             for f in self.findings}}

    def require(self) -> None:
        """CheckFailed naming every finding that does not hold and its fix; nothing was changed."""
        if self.refusals:
            raise CheckFailed("refused before any change (nothing was changed): "
                              + "; ".join(f.line() for f in self.refusals))


@dataclass
class RunContext:
    """What a run was started with beyond the deployment: where its evidence goes, what signs it, and the run lock
    (rotation.core.lock) it holds for its whole length. `signing_required`: a live run must be signed with the
    configured key (a per-run key proves integrity, not who signed)."""

    reports_dir: Path | None = None
    signing_key: Path | None = None
    signing_required: bool = False
    lock: RunLock | None = None


# --- files ------------------------------------------------------------------------------------------------------------
def signing_key(path: Path | None, *, required: bool) -> Finding:
    """The key that will sign the run folder: readable, an unencrypted Ed25519 PEM private key, and usable."""
    name = "signing key"
    if path is None:
        return Finding(name, not required, "none configured: a per-run key will sign the evidence (it proves the "
                                           "folder unchanged since signing, not who signed)",
                       "name an Ed25519 key with --signing-key FILE (or ROTATION_SIGNING_KEY); make one with "
                       "`openssl genpkey -algorithm ed25519 -out signing-key.pem && chmod 600 signing-key.pem`")
    make = f"`openssl genpkey -algorithm ed25519 -out {path} && chmod 600 {path}` (and pin its public key)"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Finding(name, False, f"{path} cannot be read ({exc.strerror or type(exc).__name__})",
                       f"make {path} a file readable by the user running the rotation (mode 0600), name another "
                       f"with --signing-key, or make a new one: {make}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        return Finding(name, False, f"{path} is encrypted with a passphrase (the run cannot ask for it)",
                       f"an unencrypted copy kept at mode 0600: `openssl pkey -in {path} -out <new file>` (it asks "
                       "for the passphrase), then --signing-key <new file>")
    except (ValueError, UnicodeError):
        return Finding(name, False, f"{path} is not a PEM private key", make)
    if not isinstance(key, Ed25519PrivateKey):
        kind = type(key).__name__.lstrip("_").removesuffix("PrivateKey")
        return Finding(name, False, f"{path} holds a key of type {kind}, not Ed25519 (the evidence is signed and "
                                    "verified with Ed25519)", make)
    signature = key.sign(PROBE)
    try:
        key.public_key().verify(signature, PROBE)
    except InvalidSignature:
        return Finding(name, False, f"{path}: a signature made with it does not verify", make)
    return Finding(name, True, f"{path.name}: Ed25519, signs a probe and the signature verifies")


def reports_folder(path: Path, *, room: int = REPORTS_ROOM) -> Finding:
    """Where the run folder will be written: a file can be created, written, fsynced and removed there, and the
    filesystem has `room` bytes free."""
    name = "reports folder"
    other = "or name another folder with --reports-dir"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".preflight-", delete=True) as probe:
            probe.write(b"\0" * 65536)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return Finding(name, False, f"{path} cannot be written ({exc.strerror or type(exc).__name__})",
                       f"make {path} writable by the user running the rotation (its permissions, or a read-only "
                       f"mount), {other}")
    free = shutil.disk_usage(path).free
    if free < room:
        return Finding(name, False, f"{path} has {free // 1024:,} KiB free, less than the "
                                    f"{room // 1024:,} KiB a run folder needs",
                       f"free at least {room // (1024 * 1024)} MiB on the filesystem of {path}, {other}")
    return Finding(name, True, f"{path}: writable, {free // (1024 * 1024):,} MiB free")


def reports_writable(path: Path) -> Finding:
    """Whether the reports folder (or, while it does not exist yet, the nearest folder above it) is writable, without
    creating or writing anything: access(2), which also answers EROFS for a read-only mount."""
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    if os.access(existing, os.W_OK | os.X_OK) and existing.is_dir():
        return Finding("reports folder", True, f"{path}: writable")
    why = "Read-only file system" if os.statvfs(existing).f_flag & os.ST_RDONLY else "Permission denied"
    return Finding("reports folder", False, f"{path} cannot be written ({why})",
                   f"make {path} writable by the user running the rotation (its permissions, or a read-only mount), "
                   "or name another folder with --reports-dir")


def env_file(path: Path) -> Finding:
    """The app's .env: readable, and writable where it really is (a symlink's target), with its directory (the new
    file is written beside it and renamed over it)."""
    name = ".env"
    real = Path(os.path.realpath(path))
    link = f" (a symlink to {real})" if path.is_symlink() else ""
    try:
        real.read_bytes()
    except OSError as exc:
        return Finding(name, False, f"{path}{link} cannot be read ({exc.strerror or type(exc).__name__})",
                       f"make {real} readable by the user running the rotation")
    blocked = [str(p) for p, mode in ((real, os.W_OK), (real.parent, os.W_OK | os.X_OK)) if not os.access(p, mode)]
    if blocked:
        return Finding(name, False, f"{path}{link}: {' and '.join(blocked)} not writable by this user (permissions, "
                                    "or a read-only filesystem)",
                       f"make {real} and its directory writable by the user running the rotation")
    return Finding(name, True, f"{path}{link}: readable and writable, mode {oct(real.stat().st_mode & 0o777)}")


# --- the database -----------------------------------------------------------------------------------------------------
def database_unreachable(error: psycopg.OperationalError) -> Finding:
    """The database did not answer (refused, unknown host, authentication, no such database): one finding in libpq's
    words, listed with the others rather than a traceback."""
    said = error.said if isinstance(error, DatabaseUnreachable) else libpq_said(error)
    return Finding("the database", False, f"does not answer ({said})", UNREACHABLE_FIX)


def database_privileges(conn: psycopg.Connection) -> list[Finding]:
    """TEMP on the database and EXECUTE on the pgcrypto functions, from the catalog."""
    row = conn.execute("SELECT current_user::text, current_database()::text, "
                       "has_database_privilege(current_database(), 'TEMP')").fetchone()
    role, database, temp = row if row else ("?", "?", False)
    role_id, db_id = sql.Identifier(str(role)).as_string(None), sql.Identifier(str(database)).as_string(None)
    findings = [Finding("TEMP on the database", bool(temp),
                        f"role {role} {'may' if temp else 'may not'} create temporary tables in {database} (keys "
                        "reach the server only through a session temp table)",
                        f"GRANT TEMPORARY ON DATABASE {db_id} TO {role_id};")]
    missing, absent = [], []
    for signature in PGCRYPTO_FUNCTIONS:
        found = conn.execute("SELECT to_regprocedure(%s) IS NOT NULL, COALESCE(has_function_privilege("
                             "to_regprocedure(%s), 'EXECUTE'), false)", (signature, signature)).fetchone()
        if not found or not found[0]:
            absent.append(signature)
        elif not found[1]:
            missing.append(signature)
    if not conn.autocommit:
        conn.commit()
    if absent:
        findings.append(Finding("pgcrypto", False, f"not found on the search path: {', '.join(absent)}",
                                f"CREATE EXTENSION IF NOT EXISTS pgcrypto; (in {database}, as its owner or a "
                                "superuser), or add pgcrypto's schema to the role's search_path"))
    else:
        findings.append(Finding("pgcrypto", not missing,
                                f"EXECUTE on {len(PGCRYPTO_FUNCTIONS) - len(missing)} of {len(PGCRYPTO_FUNCTIONS)} "
                                "functions the rotation calls" + (f"; not on {', '.join(missing)}" if missing else ""),
                                " ".join(f"GRANT EXECUTE ON FUNCTION {s} TO {role_id};" for s in missing)))
    return findings


# --- the app ----------------------------------------------------------------------------------------------------------
def app_settings(app: AppCommands, *, needs: Iterable[str] = ("stop", "start", "health_url")) -> Finding:
    """The commands and endpoint the later steps run are configured (a step half-way through must not find one
    missing)."""
    missing = [n for n in needs if not str(getattr(app, n, "") or "").strip()]
    return Finding("app settings", not missing,
                   f"{', '.join(missing)} not configured" if missing
                   else f"stop `{app.stop}`, start `{app.start}`, health {app.health_url}",
                   "set them in the configuration's [app], or with --app-stop / --app-start / --health-url")


def files_and_settings(context: RunContext, env: Path, app: AppCommands) -> list[Finding]:
    """The checks every procedure that changes .env and restarts the app makes."""
    reports = [reports_folder(context.reports_dir)] if context.reports_dir is not None else []
    return [signing_key(context.signing_key, required=context.signing_required), *reports, env_file(env),
            app_settings(app)]
