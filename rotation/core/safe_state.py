"""Where a rotation stands when a run ends: every procedure ends each run in one of its safe states and says which in
ONE line with the command to run next (the operator's command prints it last; the evidence records it). Each section
decides its own states (rotation.db_key.safe_state, rotation.providers.safe_state); this is the shape they share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rotation.core import envfile


@dataclass(frozen=True)
class SafeState:
    kind: str              # the section's name for the state (e.g. "data moved", "in progress")
    reached: bool          # the run is in the state `kind` names (False: e.g. the app would not start)
    line: str              # ONE line: where things stand and the command to run next
    detail: dict[str, object]


def nothing_changed(detail: dict[str, object], *, none_in_progress: str, env: str, app: str, app_ok: bool,
                    rotate: str) -> SafeState:
    """The state of a run that changed nothing (a refusal, a failure before the first change, or a scenario that
    rotates nothing), in words true whether or not a step failed. `rotate`: the command that starts a rotation."""
    if app_ok:
        line = (f"SAFE (nothing changed): {none_in_progress}; {env} and {app}. Next: `{rotate}` starts one (if a step "
                "above failed, fix its cause first).")
    else:
        line = (f"NOT SAFE YET (nothing changed, but {app}): {env}. Next: fix the cause above and start the app if it "
                f"is down, then `{rotate}` (which also starts an app an earlier run stopped).")
    return SafeState("nothing changed", app_ok, line, detail)


def untold(error: Exception, next_command: str) -> SafeState:
    """Where the rotation stands could not be told (settle never raises: the operator gets a line whatever happened)."""
    text = f"{type(error).__name__}: {error}"
    return SafeState("unknown", False, f"UNKNOWN: where the rotation stands could not be told ({text}). Next: "
                     f"`{next_command}` once that is fixed.", {"safe state": "unknown", "error": text})


def env_holds(env_file: Path, env_name: str) -> str:
    """The fingerprint of the value .env holds, or why there is none to name."""
    try:
        return envfile.get_secret(env_file, env_name).fingerprint
    except envfile.EnvFileError:
        return "no value python-dotenv can read (see the error above)"
