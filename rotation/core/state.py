"""Each rotation as four resumable steps, create -> set -> test -> finish, with PENDING / CURRENT / PREVIOUS labels.

The state lives beside .env in `.rotation-state.json` (mode 0600) and names credentials by fingerprint only. A run
killed after any step leaves a state the next run reads to finish the rotation; a new rotation refuses to start over
a stale PENDING unless told to abandon it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

Step = Literal["create", "set", "test", "finish"]
STEPS: tuple[Step, ...] = ("create", "set", "test", "finish")
STATE_FILE = ".rotation-state.json"


class StaleRotationError(RuntimeError):
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
                          reason, now, now, str(backup) if backup else None)
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


def _save(env_file: Path, state: RotationState) -> None:
    states = load_all(env_file)
    states[state.credential] = state
    path = state_path(env_file)
    fd, tmp = tempfile.mkstemp(prefix=".rotation-state.", dir=path.parent)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({k: asdict(v) for k, v in states.items()}, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
