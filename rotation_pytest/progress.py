"""What the operator sees while a run goes, shown at once even while pytest captures output.

    steps      live and emergency runs: one line per step, with its status and duration
    progress   the long steps' progress (rows or items done of the total, rate, ETA; rotation.core.progress), a few
               lines per step and its final one, under --progress: `auto` (the default) shows them in live runs and
               whenever the output is a terminal, so a CI log of a rehearsal stays as it was; `lines` always; `off`
               never (a quiet CI log of a live run)
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

import pytest

from rotation.core import progress
from rotation_pytest.fixtures import target_of

_STEP_START = pytest.StashKey[float]()
_BEFORE = pytest.StashKey[progress.Reporter]()
PROGRESS_PREFIX = "  ..   "  # under the step it belongs to (its `ok` line follows)
_SAYING = threading.Lock()  # progress comes from the engines' worker threads too


def say(config: pytest.Config, lines: list[str]) -> None:
    """Lines for the operator, shown at once even while pytest captures output."""
    with _SAYING:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            print("\n".join(lines), file=sys.stderr)
            return
        capture = config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.ensure_newline()
            for line in lines:
                reporter.write_line(line)


def progress_shown(config: pytest.Config) -> bool:
    """--progress: auto shows the lines in live runs and at a terminal."""
    choice = str(config.getoption("progress"))
    if choice == "auto":
        return target_of(config) == "live" or sys.stdout.isatty()
    return choice == "lines"


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not progress_shown(config):
        return  # an xdist worker's output never reaches the operator's terminal
    config.stash[_BEFORE] = progress.install(progress.Paced(lambda line: say(config, [PROGRESS_PREFIX + line])))


def pytest_unconfigure(config: pytest.Config) -> None:
    before = config.stash.get(_BEFORE, None)
    if before is not None:  # a session run inside another gives the outer one its reporter back
        progress.install(before)


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
