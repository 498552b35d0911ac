"""Where a provider rotation stands when a run ends, said in ONE line with the command to run next: the operator's
command prints it last and the evidence records it (as the DB key rotation's rotation.db_key.safe_state does).

By the procedure's design every stop leaves .env, its backup and the provider agreeing (rotation.providers.procedure),
so the line says which credential .env holds, whether the app answers its health check now, and what the next run
does. It claims nothing this moment did not show: the app's health is asked now, the credential is named by the
fingerprint .env holds.

    finished         the rotation this run worked on reached `finish`: nothing left to do
    in progress      it stopped after step create, set or test: the same command finishes it (each step skips what is
                     done; nothing is created or revoked twice)
    nothing changed  no rotation of this credential is in progress: fix the cause, then the same command
"""

from __future__ import annotations

from typing import Literal

from rotation.core import app_control
from rotation.core.app_control import AppCommands
from rotation.core.safe_state import SafeState, nothing_changed
from rotation.core.state import RotationState

Kind = Literal["finished", "in progress", "nothing changed"]
DEFAULT_NEXT = "rotation provider resume <provider> (with the options of this run)"


def decide(progress: RotationState | None, this_rotation: str) -> Kind:
    """`this_rotation`: the rotation id this run began or resumed ("" when it got to neither)."""
    if progress is not None and progress.in_progress:
        return "in progress"
    if progress is not None and this_rotation and progress.rotation_id == this_rotation:
        return "finished"
    return "nothing changed"  # none begun, or one an earlier run finished


def app_now(app: AppCommands) -> tuple[str, bool]:
    """The app's health as asked now, in words."""
    health = app_control.health(app.health_url)
    if health.healthy:
        return f"the app is healthy at {app.health_url}", True
    return f"the app is {health.unhealthy_at(app.health_url)}", False


def describe(kind: Kind, *, label: str, progress: RotationState | None, env_fp: str, app: str, app_ok: bool,
             next_command: str) -> SafeState:
    rotation = progress.rotation_id if progress is not None else None
    detail: dict[str, object] = {"safe state": kind, "rotation": rotation, ".env holds": env_fp, "app": app,
                                 "last step done": progress.step if progress else None,
                                 "pending": progress.pending_fp if progress else None,
                                 "current": progress.current_fp if progress else None}
    rotate = next_command.replace(" resume", " rotate", 1)
    if kind == "finished":
        line = (f"DONE: rotation {rotation} of the {label} is finished: .env holds {env_fp}; {app}."
                + (" Nothing to do." if app_ok else " Next: start the app and check it (`rotation status`)."))
        return SafeState(kind, app_ok, line, detail)
    if kind == "in progress":
        assert progress is not None
        which = ("the new" if env_fp == progress.pending_fp else "the current" if env_fp == progress.current_fp
                 else "neither the new nor the current")
        line = (f"IN PROGRESS: rotation {rotation} of the {label} stopped after step '{progress.step}'; .env holds "
                f"{which} {label} {env_fp}; {app}. Next: `{next_command}` finishes it (each step skips what is "
                "done: nothing is created or revoked twice).")
        return SafeState(kind, which != "neither the new nor the current", line, detail)
    return nothing_changed(detail, none_in_progress=f"no rotation of the {label} is in progress",
                           env=f".env holds {env_fp}", app=app, app_ok=app_ok, rotate=rotate)
