"""The end of a run: SIGINT/SIGTERM handled as a request to stop at a safe point, and the one line saying where the
rotation stands and what to run next.

    signals       SIGINT and SIGTERM become a KeyboardInterrupt (rotation.core.signals) in the main process, so a
                  run stops as on Ctrl-C: the step is cut short, the teardowns put the rotation in its safe state,
                  the run folder is written.
    say_safe_state  the line a procedure's settle() produced: kept in the signed evidence (a closing item, shown in
                  the terminal summary) and handed to the operator's command (rotation.cli.features.NextStep), which
                  prints it last.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence

import pytest

from rotation.cli.features import NextStep
from rotation.core import signals
from rotation.core.database import mask_dsn_passwords
from rotation.evidence.recorder import CLOSING_PREFIX
from rotation_pytest.evidence import STATE
from rotation_pytest.fixtures import target_of
from rotation_pytest.progress import say

TITLE = "next step"
WARNINGS = "warnings"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        signals.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        signals.uninstall()


def _next_step(config: pytest.Config) -> NextStep | None:
    return next((p for p in config.pluginmanager.get_plugins() if isinstance(p, NextStep)), None)


def next_command(config: pytest.Config, default: str) -> str:
    """The command that takes the procedure up again: the operator's `rotation ...` command; on live, for an operator
    who runs the suite with pytest (`pytest -m emergency --target live ...`), this pytest command line (a DSN's
    password masked: it is supplied again as before, e.g. from $ROTATION_DSN or ~/.pgpass); else (a rehearsal, whose
    worlds are gone with it) `default`, the section's operator command in words."""
    listener = _next_step(config)
    if listener is not None:
        return listener.command
    if target_of(config) == "live":
        return shlex.join(["pytest", *(mask_dsn_passwords(arg) for arg in config.invocation_params.args)])
    return default


def operator_notice(config: pytest.Config) -> Callable[[str], None]:
    """A procedure's line for the operator, shown at once past pytest's capture (waiting for a database, a .env
    found more open than 0600)."""
    return lambda line: say(config, [line])


@pytest.fixture
def notice(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """A line for the operator at once (see operator_notice)."""
    return operator_notice(pytestconfig)


def say_safe_state(config: pytest.Config, line: str, *, source: str, warnings: Sequence[str] = ()) -> None:
    """The run's one line (and the warnings the run gave on the way): the latest replaces an earlier one (each
    scenario settles; the last says where things stand). Live runs only: a rehearsal's worlds are torn down with
    their scenarios, and each scenario's evidence already says where its rotation stood."""
    if target_of(config) != "live":
        return
    state = config.stash.get(STATE, None)
    if state is not None:
        ours = (CLOSING_PREFIX + TITLE, CLOSING_PREFIX + WARNINGS)
        state.recorder.run_items[:] = [i for i in state.recorder.run_items if i.name not in ours]
        if warnings:
            state.recorder.closing(WARNINGS, list(warnings), source=source)
        state.recorder.closing(TITLE, [line], source=source)
    listener = _next_step(config)
    if listener is not None:
        listener.said(line, warnings)
