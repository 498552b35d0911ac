"""Every use of pytest's and pytest-bdd's private internals, in one place. tests/plugin/test_bdd_internals.py fails
with the installed versions named when any of them changes shape."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import pytest
from _pytest.junitxml import xml_key as junit_xml_key
from pytest_bdd.parser import FeatureParser, Step
from pytest_bdd.scenario import scenario_wrapper_template_registry
from pytest_bdd.steps import StepFunctionContext, step_function_context_registry

STEP_MODULES = "rotation_suite.steps."  # the suite's step definitions (found by name: the plugin never imports them)


def scenario_template(item: pytest.Item) -> Any | None:
    """The pytest-bdd ScenarioTemplate behind a collected scenario item, or None for any other item."""
    func = getattr(item, "obj", None)
    try:
        return scenario_wrapper_template_registry.get(func) if func is not None else None
    except TypeError:  # not weak-referenceable: not a scenario
        return None


def unregister_junit_writer(config: pytest.Config) -> None:
    """Stop pytest's JUnit writer from announcing a file this suite wrote only as a scratch copy."""
    writer = config.stash.get(junit_xml_key, None)
    if writer is not None:
        del config.stash[junit_xml_key]
        config.pluginmanager.unregister(writer)


def unregister_cucumber_writer(config: pytest.Config) -> None:
    """The same for pytest-bdd's cucumber JSON writer, which it keeps as a private attribute of the config."""
    writer = getattr(config, "_bddcucumberjson", None)
    if writer is not None:
        config.pluginmanager.unregister(writer)
        del config._bddcucumberjson  # type: ignore[attr-defined]


def kept_by_mark_and_keyword(item: pytest.Item, config: pytest.Config) -> bool:
    """Whether the operator's -m and -k expressions keep this item, evaluated with pytest's own matchers (the ones
    its mark plugin deselects with), without deselecting anything."""
    from _pytest.mark import KeywordMatcher, MarkMatcher, _parse_expression

    markexpr, keywordexpr = config.option.markexpr, (config.option.keyword or "").lstrip()
    if markexpr and not _parse_expression(markexpr, "-m").evaluate(MarkMatcher.from_markers(item.iter_markers())):
        return False
    return not keywordexpr or bool(_parse_expression(keywordexpr, "-k").evaluate(KeywordMatcher.from_item(item)))


def wrap_terminal_file(config: pytest.Config, wrap: Callable[[TextIO], TextIO]) -> bool:
    """Put a stream in front of the file pytest's terminal writer prints to (its private `_tw._file`). Returns False
    when there is no terminal reporter (e.g. -p no:terminal)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    writer = getattr(reporter, "_tw", None)
    if writer is None or not hasattr(writer, "_file"):
        return False
    writer._file = wrap(writer._file)
    return True


def scenario_steps(feature: Path, tag: str) -> list[Step]:
    """The Background's steps, then those of the one scenario tagged `tag`, in the feature's order, as pytest-bdd's own
    parser reads them for a run."""
    parsed = FeatureParser(str(feature.parent), feature.name).parse()
    tagged = [s for s in parsed.scenarios.values() if tag in s.tags]
    if len(tagged) != 1:
        raise LookupError(f"{feature.name}: {len(tagged)} scenarios tagged @{tag}, expected one")
    return tagged[0].steps


def step_definition(step: Step, prefix: str = STEP_MODULES) -> StepFunctionContext:
    """The one step definition (among the imported modules named `prefix`...) that a run would call for `step`."""
    found = [c for c in list(step_function_context_registry.values())
             if c.type in (None, step.type) and c.step_func.__module__.startswith(prefix)
             and c.parser.is_matching(step.name)]
    if len(found) != 1:
        raise LookupError(f"{len(found)} step definitions for '{step.keyword} {step.name}' (line {step.line_number}), "
                          "expected one")
    return found[0]


def run_steps(steps: Sequence[Step], fixture: Callable[[str], object], prefix: str = STEP_MODULES) -> None:
    """Each step run by its own step definition, its arguments parsed from the step text as pytest-bdd does and its
    fixtures taken from `fixture` (a scenario's request.getfixturevalue, or a test's values by name). pytest-bdd's
    step hooks do not fire: the steps run inside the step that runs them, which the evidence records."""
    for step in steps:
        context = step_definition(step, prefix)
        parsed = context.parser.parse_arguments(step.name) or {}
        kwargs = {k: context.converters.get(k, _same)(v) for k, v in parsed.items()}
        params = inspect.signature(context.step_func).parameters
        kwargs |= {name: fixture(name) for name in params if name not in kwargs}
        try:
            context.step_func(**kwargs)
        except Exception as exc:
            exc.add_note(f"at the step '{step.keyword} {step.name}' (line {step.line_number})")
            raise


def _same(value: object) -> object:
    return value
