"""Every command-line option of the suite (see `pytest --help`, groups "credential rotation runbook"), registered from
the one table rotation.cli.option_table, which the operator's commands (`rotation db-key rotate`, `rotation provider
rotate`, `rotation emergency`) take their options from too: one set of options and one help text, whoever runs the
procedure. A new option is a row of that table."""

from __future__ import annotations

import pytest

from rotation.cli.option_table import GROUPS, OPTIONS


def pytest_addoption(parser: pytest.Parser) -> None:
    for option in OPTIONS:
        group = parser.getgroup(option.group, GROUPS[option.group])
        group.addoption(option.flag, **option.arguments(default=option.default_now()))
