"""What the operator sees while a live or emergency run goes: one line per step, shown at once even while pytest
captures output, with its status and duration."""

from __future__ import annotations

import contextlib
import sys
import time

import pytest

from rotation_pytest.fixtures import target_of

_STEP_START = pytest.StashKey[float]()


def say(config: pytest.Config, lines: list[str]) -> None:
    """Lines for the operator, shown at once even while pytest captures output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        print("\n".join(lines), file=sys.stderr)
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.ensure_newline()
        for line in lines:
            reporter.write_line(line)


def _shown(request: pytest.FixtureRequest) -> bool:
    return target_of(request.config) == "live" or request.node.get_closest_marker("emergency") is not None


def _elapsed(request: pytest.FixtureRequest) -> float:
    started: float = request.node.stash.get(_STEP_START, time.monotonic())
    return time.monotonic() - started


def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature: object, scenario: object) -> None:
    if _shown(request):
        say(request.config, [f"{'EMERGENCY' if request.node.get_closest_marker('emergency') else 'SCENARIO'} "
                             f"{scenario.name}"])  # type: ignore[attr-defined]


def pytest_bdd_before_step(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                           step_func: object) -> None:
    request.node.stash[_STEP_START] = time.monotonic()


def pytest_bdd_after_step(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                          step_func: object, step_func_args: dict[str, object]) -> None:
    if _shown(request):
        say(request.config, [f"  ok   {_elapsed(request):6.2f}s  {step.keyword} {step.name}"])  # type: ignore[attr-defined]


def pytest_bdd_step_error(request: pytest.FixtureRequest, feature: object, scenario: object, step: object,
                          step_func: object, step_func_args: dict[str, object], exception: Exception) -> None:
    if _shown(request):
        first = (str(exception).strip().splitlines() or [""])[0][:200]
        say(request.config, [f"  FAIL {_elapsed(request):6.2f}s  {step.keyword} {step.name}",  # type: ignore[attr-defined]
                             f"       {type(exception).__name__}: {first}"])
