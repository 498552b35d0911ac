"""Runbook section 1, Database Encryption Key Rotation, as small steps usable from pytest-bdd or the CLI.

Four-step model: create (new key, PENDING) -> set (.env holds it; data re-encrypted) -> test (population verified)
-> finish (rotation logged; PENDING becomes CURRENT). The old key is read back from the .env backup when a killed run
is resumed, so nothing but .env and its backups ever holds a key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rotation.core import envfile, state
from rotation.core.database import connect
from rotation.core.keys import generate_key
from rotation.core.rotation_log import RotationRecord, find_rotation, log_rotation
from rotation.core.secret import fingerprint
from rotation.db_key.reencrypt import CRM_PII, JobResult, ProgressCallback, TableSpec, reencrypt, start_or_resume_job
from rotation.db_key.verify import PopulationCheck, snapshot, verify

CREDENTIAL = "db_encryption_key"
ENV_NAME = "DB_ENCRYPTION_KEY"


class ResumeError(RuntimeError):
    pass


@dataclass(frozen=True)
class Keys:
    old: str
    new: str


def begin(env_file: Path, backup: Path, *, reason: str, abandon: bool = False) -> Keys:
    """Step create: a new CSPRNG key, recorded as PENDING by fingerprint. Refuses over an unfinished rotation."""
    old = envfile.get_value(env_file, ENV_NAME)
    new = generate_key()
    state.begin(env_file, CREDENTIAL, current_fp=fingerprint(old), pending_fp=fingerprint(new), reason=reason,
                backup=backup, abandon=abandon)
    return Keys(old, new)


def update_env(env_file: Path, keys: Keys) -> None:
    """Step set (1/2): write the new key into .env atomically."""
    envfile.set_value(env_file, ENV_NAME, keys.new)
    state.advance(env_file, CREDENTIAL, "set")


def prepare(dsn: str, keys: Keys, spec: TableSpec = CRM_PII, *, workers: int = 2) -> tuple[int, int]:
    """Create (or find) the re-encryption job and snapshot every plaintext's digest before any value changes."""
    with connect(dsn) as conn:
        job_id, _ = start_or_resume_job(conn, spec, keys.old, keys.new, ranges=workers * 4)
        return job_id, snapshot(conn, spec, job_id, keys.old, keys.new)


def reencrypt_all(dsn: str, keys: Keys, spec: TableSpec = CRM_PII, *, workers: int | None = None,
                  on_progress: ProgressCallback | None = None) -> JobResult:
    """Step set (2/2): re-encrypt every value under the new key."""
    return reencrypt(dsn, keys.old, keys.new, spec=spec, workers=workers, on_progress=on_progress)


def verify_population(dsn: str, keys: Keys, job_id: int, env_file: Path, spec: TableSpec = CRM_PII) -> PopulationCheck:
    """Step test: every value proven; the state advances only when the proof holds."""
    with connect(dsn) as conn:
        check = verify(conn, spec, job_id, keys.old, keys.new)
    if check.ok:
        state.advance(env_file, CREDENTIAL, "test")
    return check


def log(dsn: str, keys: Keys, env_file: Path, *, rotated_by: str, reason: str) -> RotationRecord:
    """Step finish: the rotation's audit row; PENDING becomes CURRENT."""
    with connect(dsn) as conn:
        record = log_rotation(conn, CREDENTIAL, rotated_by=rotated_by, previous_secret=keys.old, reason=reason)
    state.advance(env_file, CREDENTIAL, "finish")
    return record


def recover_keys(env_file: Path) -> Keys:
    """For a resumed rotation: the new key from .env, the old one from the backup whose key matches the state."""
    current = state.load(env_file, CREDENTIAL)
    if current is None or not current.in_progress:
        raise ResumeError(f"no unfinished {CREDENTIAL} rotation is recorded beside {env_file}")
    new = envfile.get_value(env_file, ENV_NAME)
    if fingerprint(new) != current.pending_fp:
        raise ResumeError(
            f"the PENDING key {current.pending_fp} never reached {env_file} (it holds {fingerprint(new)}); nothing was "
            "re-encrypted with it: start a new rotation with --abandon-pending")
    for candidate in envfile.backups(env_file):
        old = envfile.read_env(candidate).get(ENV_NAME, "")
        if old and fingerprint(old) == current.current_fp:
            return Keys(old, new)
    raise ResumeError(f"no .env backup holds the previous key {current.current_fp}: restore it before resuming")


def find_logged(dsn: str, keys: Keys) -> RotationRecord | None:
    with connect(dsn) as conn:
        return find_rotation(conn, CREDENTIAL, keys.old)


COUNT_READABLE = """
SELECT count(v) AS non_null, count(rotation_runbook.try_decrypt(v, %(k)s)) AS readable
FROM crm_client_preferences, LATERAL (VALUES (email_encrypted), (phone_number_encrypted), (full_name_encrypted)) c(v)
"""


def count_readable(dsn: str, key: str) -> dict[str, int]:
    """How many non-NULL PII values this key opens."""
    with connect(dsn) as conn:
        non_null, readable = conn.execute(COUNT_READABLE, {"k": key}).fetchone()
    return {"non_null": int(non_null), "readable": int(readable)}
