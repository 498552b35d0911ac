"""rotation_pytest/bdd.py leans on private parts of pytest and pytest-bdd. If an upgrade changes them, these tests
fail first, naming the installed versions, instead of the evidence silently losing its scenarios."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

VERSIONS = f"pytest {version('pytest')}, pytest-bdd {version('pytest-bdd')}"


def test_the_private_names_still_exist() -> None:
    try:
        from _pytest.junitxml import LogXML, xml_key
        from _pytest.mark import KeywordMatcher, MarkMatcher, _parse_expression
        from pytest_bdd.scenario import scenario_wrapper_template_registry
    except ImportError as exc:  # pragma: no cover - only on an incompatible upgrade
        pytest.fail(f"{VERSIONS}: a private name rotation_pytest/bdd.py imports is gone: {exc}")
    assert isinstance(xml_key, pytest.StashKey), f"{VERSIONS}: _pytest.junitxml.xml_key is no longer a StashKey"
    assert hasattr(scenario_wrapper_template_registry, "get"), f"{VERSIONS}: the scenario registry changed shape"
    assert LogXML is not None
    assert _parse_expression("skip and not b", "-m").evaluate(MarkMatcher.from_markers([pytest.mark.skip.mark]))
    assert callable(KeywordMatcher.from_item), f"{VERSIONS}: KeywordMatcher changed shape"


FEATURE = """Feature: Internals
  Scenario: One step
    Given a step
"""
STEPS = """
from pytest_bdd import given, scenarios

scenarios("internals.feature")


@given("a step")
def a_step():
    pass
"""
CONFTEST = """
import pytest

from rotation_pytest.bdd import scenario_template, unregister_cucumber_writer, unregister_junit_writer

SEEN = []


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        template = scenario_template(item)
        SEEN.append((template.name, template.feature.rel_filename.rsplit("/", 1)[-1],
                     [s.name for s in template.steps]))


def pytest_sessionfinish(session):
    unregister_junit_writer(session.config)
    unregister_cucumber_writer(session.config)
    assert session.config.stash.get(__import__("_pytest.junitxml").junitxml.xml_key, None) is None
    assert getattr(session.config, "_bddcucumberjson", None) is None
    print("SEEN", SEEN)
"""


def test_scenario_templates_and_writers_behave_as_rotation_pytest_expects(pytester: pytest.Pytester,
                                                                         tmp_path: Path) -> None:
    pytester.makefile(".feature", internals=FEATURE)
    pytester.makepyfile(test_internals=STEPS)
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest("-s", f"--junitxml={tmp_path / 'j.xml'}", f"--cucumberjson={tmp_path / 'c.json'}")
    result.assert_outcomes(passed=1)
    assert "SEEN [('One step', 'internals.feature', ['a step'])]" in result.stdout.str(), \
        f"{VERSIONS}: pytest-bdd's scenario template no longer exposes name, feature and steps as used\n" \
        + result.stdout.str()[-2000:]
