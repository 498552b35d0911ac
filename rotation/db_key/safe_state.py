"""Where a DB key rotation stands when a run ends, decided in one place from the four-step state and the jobs.

Every run ends in one of these, said in ONE line with the command to run next (`SafeState.line`):

    finished          the rotation is done: every value and .env on the new key, the app on it. Nothing to do.
    nothing changed   no rotation is in progress: .env holds the current key, the app runs on it.
    nothing moved     (a) a rotation is pending but no value is under its new key: .env holds the old key again and
                      the app is started and proven healthy on it; the next run starts the rotation again.
    data moved        (b) values are under the new key, which .env holds: `rotation db-key resume` finishes it.
    unknown           the database did not answer, so (a) and (b) cannot be told apart: resume once it is back
                      (it tells them apart itself); .env is left as it is.

`decide` is the rule; `DbKeyRotation.settle` (procedure.py) acts on it at the end of every run and `describe`
phrases the line the operator's command prints and the evidence records.
"""

from __future__ import annotations

from typing import Literal

from rotation.core.safe_state import SafeState, nothing_changed
from rotation.core.state import RotationState
from rotation.db_key.reencrypt import JobSummary

Kind = Literal["finished", "nothing changed", "nothing moved", "data moved", "unknown"]
DEFAULT_NEXT = "rotation db-key resume (with the options of this run)"


def values_moved(jobs: list[JobSummary]) -> int | None:
    """How many values are under the new key by the jobs' checkpoints (each write commits with its checkpoint), or
    None when none is: a job marked done counts even with no row (an empty table)."""
    moved = sum(j.rows_done for j in jobs)
    return moved if moved or any(j.status == "done" for j in jobs) else None


def decide(progress: RotationState | None, jobs: list[JobSummary] | None) -> Kind:
    """The safe state a run must end in. `jobs`: the re-encryption jobs towards the pending key (None: the database
    did not answer)."""
    if progress is None:
        return "nothing changed"
    if not progress.in_progress:
        return "finished"
    if jobs is None:
        return "unknown"
    return "nothing moved" if values_moved(jobs) is None else "data moved"


def describe(kind: Kind, *, rotation: str | None, env_key: str, old_fp: str | None, new_fp: str | None,
             app: str, app_ok: bool, moved: int | None, next_command: str = DEFAULT_NEXT,
             why_unknown: str = "") -> SafeState:
    """The line for `kind`. `env_key`: the fingerprint .env holds; `app`: what the app is doing, in words."""
    rotate = next_command.replace(" resume", " rotate", 1)
    detail: dict[str, object] = {"safe state": kind, "rotation": rotation, ".env holds": env_key,
                                 "old key": old_fp, "new key": new_fp, "app": app, "values under the new key": moved}
    if kind == "finished":
        line = f"DONE: rotation {rotation} is finished: .env and every value are on the key {env_key}; {app}."
        return SafeState(kind, True, line, detail)
    if kind == "nothing changed":
        return nothing_changed(detail, none_in_progress="no rotation is in progress",
                               env=f".env is as it was (key: {env_key})", app=app, app_ok=app_ok, rotate=rotate)
    if kind == "nothing moved":
        if app_ok:
            line = (f"SAFE (a) nothing moved: no value is under the new key {new_fp}; .env holds the old key {env_key} "
                    f"again and {app}; rotation {rotation} stays pending. Next: fix the cause above, then `{rotate}`.")
        else:
            line = (f"NOT SAFE YET (a) nothing moved: .env holds the old key {env_key} again, but {app}. Next: "
                    f"`{rotate}` starts the app this run stopped, then the rotation again.")
        return SafeState(kind, app_ok, line, detail)
    if kind == "data moved":
        line = (f"SAFE (b) data moved: {moved or 0:,} values are under the new key {new_fp}, which .env holds; {app}. "
                f"Next: `{next_command}` finishes rotation {rotation}.")
        return SafeState(kind, True, line, detail)
    line = (f"UNKNOWN: the database did not answer ({why_unknown}), so whether any value is under the new key "
            f"{new_fp} cannot be told; .env holds {env_key}, {app}. Next: once the database is back, "
            f"`{next_command}` (it tells the two cases apart and finishes or starts over).")
    return SafeState(kind, False, line, detail)
