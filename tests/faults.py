"""A pytest plugin for crash tests: SIGKILL the running process right after (or right before) a named step, or hold
it just before a step while the test breaks the world (a signal, a database restart).

Loaded into an operator's command with PYTEST_ADDOPTS="-p tests.faults" (the command runs the features in-process),
and armed with ROTATION_TEST_KILL_AFTER="<step text>" or ROTATION_TEST_KILL_BEFORE="<step text>". A step text that
several scenarios share ("the application services are restarted immediately") is narrowed to one of them with
ROTATION_TEST_KILL_SCENARIO="<scenario name>" (as rendered, e.g. "Compromised SMTP password"). Nothing in the product
knows about it: the process dies exactly as a kill -9 from outside would leave it.

ROTATION_TEST_BLOCK_BEFORE="<step text>" with ROTATION_TEST_BLOCK_FILE=<path>: once the step has begun (it is the
running step of the evidence), the process writes its pid to <path> and waits, in Python, while the file exists;
the test does its harm and removes the file to let the step go on. A signal sent meanwhile is handled as anywhere in
the step.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

KILL_AFTER = "ROTATION_TEST_KILL_AFTER"
KILL_BEFORE = "ROTATION_TEST_KILL_BEFORE"
KILL_SCENARIO = "ROTATION_TEST_KILL_SCENARIO"
BLOCK_BEFORE = "ROTATION_TEST_BLOCK_BEFORE"
BLOCK_FILE = "ROTATION_TEST_BLOCK_FILE"
BLOCK_LIMIT_S = 600.0


def _kill_if(variable: str, scenario: object, step: object) -> None:
    if os.environ.get(variable) != step.name:  # type: ignore[attr-defined]
        return
    if os.environ.get(KILL_SCENARIO, scenario.name) == scenario.name:  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGKILL)


def pytest_bdd_before_step_call(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                                step_func: object, step_func_args: dict[str, object]) -> None:
    _kill_if(KILL_BEFORE, scenario, step)
    _block_if(step)


def _block_if(step: object) -> None:
    if os.environ.get(BLOCK_BEFORE) != step.name:  # type: ignore[attr-defined]
        return
    held = Path(os.environ[BLOCK_FILE])
    held.write_text(str(os.getpid()))
    deadline = time.monotonic() + BLOCK_LIMIT_S
    while held.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def pytest_bdd_after_step(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                          step_func: object, step_func_args: dict[str, object]) -> None:
    _kill_if(KILL_AFTER, scenario, step)
