"""The scheduled DB key rotation run directly on a staging world (no pytest-bdd run around it): its steps are those
of the feature (rotation_pytest.scheduled), each run through its own step definition with this world's values for the
fixtures it names. No test lists the sequence."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_bdd.parser import Step

import rotation_suite.steps.common
import rotation_suite.steps.db_key  # noqa: F401  (imported for their step definitions)
from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence
from rotation.db_key.procedure import DbKeyRotation
from rotation_pytest.bdd import run_steps
from rotation_pytest.scheduled import scheduled_db_key_steps


def run(world: Deployment, rotation: DbKeyRotation, evidence: Evidence, steps: Sequence[Step] | None = None) -> None:
    values: dict[str, object] = {"db_key_rotation": rotation, "deployment": world, "evidence": evidence,
                                 "scenario_credential": rotation.credential, "notice": lambda line: None}
    run_steps(scheduled_db_key_steps() if steps is None else steps, values.__getitem__)


def split_at(text: str) -> tuple[list[Step], list[Step]]:
    """The scheduled steps before the one whose text is `text`, and that one with those after it."""
    steps = scheduled_db_key_steps()
    at = next(i for i, s in enumerate(steps) if s.name == text)
    return steps[:at], steps[at:]
