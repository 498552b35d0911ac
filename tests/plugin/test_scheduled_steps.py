"""The scheduled DB key rotation's sequence exists only in its feature: rotation_pytest.scheduled derives it (the
Background, then the @scheduled scenario, parsed by pytest-bdd) and rotation_pytest.bdd.run_steps runs each step
through its own step definition, in that order. Here: the derived sequence is the feature's, line for line; each of
its steps has exactly one definition; and the runner follows whatever order a feature gives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pytest_bdd import given, parsers, then, when

import rotation_suite.plugins
from rotation_pytest import bdd
from rotation_pytest.scheduled import feature_path, scheduled_db_key_steps

for plugin in rotation_suite.plugins.pytest_plugins:  # the suite's step definitions, as a run loads them
    __import__(plugin)

STEP_LINE = re.compile(r"^\s+(Given|When|Then|And|But) (.+)$")


def plain_reading(text: str, tag: str) -> list[str]:
    """The Background's step lines and those of the scenario tagged `tag`, read as text (no Gherkin parser)."""
    lines, taken, inside = text.splitlines(), [], False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(("Background:", "Scenario:")):
            inside = stripped.startswith("Background:") or f"@{tag}" in lines[i - 1].split()
        elif inside and (m := STEP_LINE.match(line)):
            taken.append(m.group(2))
    return taken


def test_the_derived_sequence_is_the_features() -> None:
    derived = [s.name for s in scheduled_db_key_steps()]
    assert derived == plain_reading(feature_path().read_text(), "scheduled")
    assert derived[0].startswith("no other rotation of this database is running")  # the Background comes first
    assert "all sensitive data is prepared under the new key while the application still runs" in derived


def test_each_scheduled_step_has_one_definition_in_the_suite() -> None:
    for step in scheduled_db_key_steps():
        assert bdd.step_definition(step).step_func.__module__.startswith("rotation_suite.steps."), step.name


CALLS: list[tuple[str, object]] = []


@given("the first thing")
def first_thing() -> None:
    CALLS.append(("first", None))


@when(parsers.parse("{count:d} things happen"))
def things_happen(count: int, witness: str) -> None:
    CALLS.append(("happen", (count, witness)))


@then("the last thing")
def last_thing() -> None:
    CALLS.append(("last", None))


def feature(tmp_path: Path, *steps: str) -> Path:
    path = tmp_path / "t.feature"
    path.write_text("Feature: T\n  Background:\n    Given the first thing\n\n  Scenario: other\n    Then the last thing"
                    "\n\n  @scheduled\n  Scenario: S\n" + "".join(f"    {s}\n" for s in steps))
    return path


def test_the_runner_follows_the_features_order_and_arguments(tmp_path: Path) -> None:
    CALLS.clear()
    steps = bdd.scenario_steps(feature(tmp_path, "Then the last thing", "When 3 things happen"), "scheduled")
    bdd.run_steps(steps, {"witness": "w"}.__getitem__, prefix=__name__)
    assert CALLS == [("first", None), ("last", None), ("happen", (3, "w"))]


def test_a_step_without_a_definition_is_named(tmp_path: Path) -> None:
    steps = bdd.scenario_steps(feature(tmp_path, "When nothing matches this"), "scheduled")
    with pytest.raises(LookupError, match="0 step definitions for 'When nothing matches this'"):
        bdd.run_steps(steps, {"witness": "w"}.__getitem__, prefix=__name__)

