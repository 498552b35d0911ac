"""Every use of pytest's and pytest-bdd's private internals, in one place. tests/plugin/test_bdd_internals.py fails
with the installed versions named when any of them changes shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

import pytest
from _pytest.junitxml import xml_key as junit_xml_key
from pytest_bdd.scenario import scenario_wrapper_template_registry


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
