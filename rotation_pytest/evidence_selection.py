"""Which scenarios a run was meant to run, so the evidence names every one that did not run to the end.

- Planned: the scenarios selected when collection finished. One that never started (pytest -x, a crash, a worker
  lost under xdist) is recorded "not run" with the reason, and the verdict is INCOMPLETE.
- Left out: a scenario the operator's selection keeps (their -m and -k, --deselect, the emergency's --compromised)
  that a plugin deselected anyway is recorded "not run" too, naming that: deselected by fault, not by choice.
- Skipped ones (@staging_only on live, a scenario that does not apply) carry their skip reason (evidence.py).
"""

from __future__ import annotations

import pytest

from rotation.evidence.recorder import ScenarioRecord
from rotation_pytest.bdd import kept_by_mark_and_keyword, scenario_template
from rotation_pytest.emergency import compromised_of
from rotation_pytest.evidence import scenario_record, state_of
from rotation_pytest.fixtures import config_of

LEFT_OUT = ("left out of the run although the selection (-m, -k, --deselect, --compromised) includes it: a plugin "
            "deselected it")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state_of(config).collected = [i for i in items if scenario_template(i) is not None]


def chosen(item: pytest.Item, config: pytest.Config) -> bool:
    """Whether the operator's own selection keeps the item."""
    if not kept_by_mark_and_keyword(item, config):
        return False
    if item.nodeid.startswith(tuple(config.getoption("deselect") or ())):
        return False
    if item.get_closest_marker("emergency"):
        credential = next((c.type for c in config_of(config).credentials if item.get_closest_marker(c.type)), None)
        return credential is None or credential in compromised_of(config)
    return True


def planned_records(items: list[pytest.Item]) -> list[ScenarioRecord]:
    return [scenario_record(i, scenario_template(i)) for i in items if scenario_template(i) is not None]


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    state = state_of(session.config)
    state.planned = planned_records(session.items)
    selected = {i.nodeid for i in session.items}
    left_out = [i for i in state.collected if i.nodeid not in selected and chosen(i, session.config)]
    state.left_out = planned_records(left_out)
    for record in state.left_out:
        record.reason = LEFT_OUT
    state.collected = []

