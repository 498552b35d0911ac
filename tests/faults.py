"""A pytest plugin for crash tests: SIGKILL the running process right after (or right before) a named step.

Loaded into an operator's command with PYTEST_ADDOPTS="-p tests.faults" (the command runs the features in-process),
and armed with ROTATION_TEST_KILL_AFTER="<step text>" or ROTATION_TEST_KILL_BEFORE="<step text>". Nothing in the
product knows about it: the process dies exactly as a kill -9 from outside would leave it.
"""

from __future__ import annotations

import os
import signal

import pytest

KILL_AFTER = "ROTATION_TEST_KILL_AFTER"
KILL_BEFORE = "ROTATION_TEST_KILL_BEFORE"


def _kill_if(variable: str, step: object) -> None:
    if os.environ.get(variable) == step.name:  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGKILL)


def pytest_bdd_before_step_call(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                                step_func: object, step_func_args: dict[str, object]) -> None:
    _kill_if(KILL_BEFORE, step)


def pytest_bdd_after_step(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                          step_func: object, step_func_args: dict[str, object]) -> None:
    _kill_if(KILL_AFTER, step)
