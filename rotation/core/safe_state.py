"""Where a rotation stands when a run ends: every procedure ends each run in one of its safe states and says which in
ONE line with the command to run next (the operator's command prints it last; the evidence records it). Each section
decides its own states (rotation.db_key.safe_state, rotation.providers.safe_state); this is the shape they share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SafeState:
    kind: str              # the section's name for the state (e.g. "data moved", "in progress")
    reached: bool          # the run is in the state `kind` names (False: e.g. the app would not start)
    line: str              # ONE line: where things stand and the command to run next
    detail: dict[str, object]
