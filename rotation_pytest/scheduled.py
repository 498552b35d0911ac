"""The scheduled database key rotation, run in full where another scenario needs one (Best Practices: no key in the
server log). Its steps are not listed here or anywhere else: they are the Background and the @scheduled scenario of
its feature, parsed by pytest-bdd, and each runs through its own step definition, the very call the feature makes.
A step added to or moved in the feature is added or moved here too."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_bdd.parser import Step

from rotation.cli.features import suite_folder
from rotation.core.proof import Evidence
from rotation_pytest import bdd

FEATURE = Path("features") / "rotation" / "db_encryption_key.feature"
TAG = "scheduled"


def feature_path() -> Path:
    suite = suite_folder()
    if suite is None:
        raise LookupError("the runbook's features (package rotation_suite) are not installed")
    return suite / FEATURE


def scheduled_db_key_steps() -> list[Step]:
    """The scheduled rotation's steps, in the feature's order: its Background, then the @scheduled scenario."""
    return bdd.scenario_steps(feature_path(), TAG)


def rotate_db_key(request: pytest.FixtureRequest, evidence: Evidence) -> None:
    """The scheduled rotation's steps, each through its step definition, with this scenario's fixtures (the same
    `db_key_rotation`, deployment and evidence)."""
    steps = scheduled_db_key_steps()
    evidence.record("the scheduled rotation's steps", [f"{s.keyword} {s.name}" for s in steps],
                    source=f"rotation_suite/{FEATURE.as_posix()}: the Background and the @{TAG} scenario, parsed by "
                           "pytest-bdd; each step run by its own step definition (rotation_pytest.bdd.run_steps)")
    bdd.run_steps(steps, request.getfixturevalue)
