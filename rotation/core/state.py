"""Each rotation as four resumable steps, create -> set -> test -> finish, with PENDING / CURRENT / PREVIOUS labels.

The state lives beside .env in `.rotation-state.json` (mode 0600) and names credentials by fingerprint only. A run
killed after any step leaves a state the next run reads to finish the rotation; a new rotation refuses to start over
a stale PENDING unless told to abandon it.

A PENDING credential that has not reached .env yet is kept in `.rotation-pending.<type>` beside it (mode 0600, the
same protection as .env), so a run killed before `.env` changes can finish without asking the provider again.
Every rotation has an id (`rotation_id`), recorded in the evidence of every run that works on it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from rotation.core.errors import RotationError
from rotation.core.secret import Secret

Step = Literal["create", "set", "test", "finish"]
STEPS: tuple[Step, ...] = ("create", "set", "test", "finish")
STATE_FILE = ".rotation-state.json"


class StaleRotationError(RotationError, RuntimeError):
    """A rotation of this credential is still PENDING."""


@dataclass(frozen=True)
class RotationState:
    credential: str
    step: Step
    pending_fp: str | None
    current_fp: str | None
    previous_fp: str | None
    reason: str
    started_at: str
    updated_at: str
    backup: str | None = None
    rotation_id: str = ""
    revoked_at: str | None = None  # emergency: when the provider stopped accepting CURRENT (no overlap window)

    @property
    def in_progress(self) -> bool:
        return self.step != "finish"


def state_path(env_file: Path) -> Path:
    return env_file.with_name(STATE_FILE)


def load_all(env_file: Path) -> dict[str, RotationState]:
    path = state_path(env_file)
    if not path.exists():
        return {}
    return {k: RotationState(**v) for k, v in json.loads(path.read_text()).items()}


def load(env_file: Path, credential: str) -> RotationState | None:
    return load_all(env_file).get(credential)


def begin(env_file: Path, credential: str, *, current_fp: str, pending_fp: str, reason: str,
          backup: Path | None = None, abandon: bool = False) -> RotationState:
    """Record step `create`: a new PENDING credential. Refuse while another rotation of it is unfinished."""
    existing = load(env_file, credential)
    if existing and existing.in_progress and not abandon:
        raise StaleRotationError(
            f"a rotation of {credential} started {existing.started_at} is still PENDING ({existing.pending_fp}, last "
            f"step '{existing.step}'): resume it, or abandon it explicitly (--abandon-pending) after checking "
            f"which credential .env and the provider hold")
    now = _now()
    state = RotationState(credential, "create", pending_fp, current_fp, existing.current_fp if existing else None,
                          reason, now, now, str(backup) if backup else None, str(uuid.uuid4()))
    _save(env_file, state)
    return state


def advance(env_file: Path, credential: str, step: Step) -> RotationState:
    """Mark `step` done. `finish` promotes PENDING to CURRENT and CURRENT to PREVIOUS."""
    state = load(env_file, credential)
    if state is None:
        raise StaleRotationError(f"no rotation of {credential} was started")
    if STEPS.index(step) < STEPS.index(state.step):
        return state  # re-running an earlier step of a resumed rotation changes nothing
    if step == "finish":
        state = replace(state, previous_fp=state.current_fp, current_fp=state.pending_fp, pending_fp=None)
    state = replace(state, step=step, updated_at=_now())
    _save(env_file, state)
    return state


def rewind(env_file: Path, credential: str, step: Step) -> RotationState:
    """Back to an earlier step, once what the later ones did has been undone (a DB key rotation whose re-encryption
    failed before any value moved puts the old key back into .env: the rotation is PENDING at `create` again)."""
    state = load(env_file, credential)
    if state is None or not state.in_progress:
        raise StaleRotationError(f"no rotation of {credential} is in progress")
    if STEPS.index(step) >= STEPS.index(state.step):
        return state
    state = replace(state, step=step, updated_at=_now())
    _save(env_file, state)
    return state


def record_revoked(env_file: Path, credential: str, at: dt.datetime) -> RotationState:
    """Emergency: CURRENT is dead at the provider, before PENDING reaches .env. A resumed run reads this and does not
    revoke a second time."""
    state = load(env_file, credential)
    if state is None:
        raise StaleRotationError(f"no rotation of {credential} was started")
    if state.revoked_at is not None:
        return state
    state = replace(state, revoked_at=at.astimezone(dt.UTC).isoformat(timespec="milliseconds"), updated_at=_now())
    _save(env_file, state)
    return state


def pending_path(env_file: Path, credential: str) -> Path:
    return env_file.with_name(f".rotation-pending.{credential}")


def write_pending(env_file: Path, credential: str, value: Secret) -> None:
    write_private(pending_path(env_file, credential), value.reveal())


def read_pending(env_file: Path, credential: str) -> Secret | None:
    path = pending_path(env_file, credential)
    return Secret(path.read_text()) if path.exists() else None


def discard_pending(env_file: Path, credential: str) -> None:
    pending_path(env_file, credential).unlink(missing_ok=True)


def _save(env_file: Path, state: RotationState) -> None:
    states = load_all(env_file)
    states[state.credential] = state
    write_private(state_path(env_file), json.dumps({k: asdict(v) for k, v in states.items()}, indent=2,
                                                    sort_keys=True))


def write_private(path: Path, text: str) -> None:
    """Write atomically at mode 0600: temp file in the same directory, fsync, rename; no temp file left on failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
