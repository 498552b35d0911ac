"""pytest-xdist: one aggregated, signed run folder for `pytest -n N`, the same as a serial run would write.

Each worker records its scenarios as usual (and journals them, so a killed worker's evidence is sealed by the next
session). At its end a worker ships its journal events, the secrets registered with it (in memory, over xdist's
channel to the controller; never written), its plan (the selected and left-out scenarios) and the files it
registered for the leak scan, in `workeroutput`. The controller replays every worker's events into its own recorder;
its session end then orders the scenarios as collected and writes the one run folder. A worker that dies ships
nothing: its scenarios are "not run" in the controller's folder (INCOMPLETE) and its journal is sealed by the next
session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rotation.evidence.journal import replay_events, scenario_event, scenario_from_event
from rotation_pytest.evidence import RunState, state_of

KEY = "rotation_evidence"
GROUPS = "rotation_loadgroup"


def pytest_configure(config: pytest.Config) -> None:
    """`pytest -n N` honours xdist_group marks (the emergency procedure is one incident: one worker runs all of it,
    in order): plain load balancing becomes loadgroup on the controller, and each worker is told so (a worker parses
    the command line again and would not know)."""
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"
    if getattr(config, "workerinput", {}).get(GROUPS):
        config.option.loadgroup = True


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    if node.config.getvalue("dist") == "loadgroup":
        node.workerinput[GROUPS] = True


def ship(config: pytest.Config, state: RunState) -> None:
    """On a worker, at its session end: everything the controller needs, as plain data."""
    config.workeroutput[KEY] = {  # type: ignore[attr-defined]
        "events": list(state.recorder.journal.events),
        "secrets": list(state.recorder.secrets),
        "planned": [scenario_event(s) for s in state.planned],
        "left_out": [scenario_event(s) for s in state.left_out],
        "selected": state.meta.selected, "deselected": state.meta.deselected,
        "feature_digests": state.meta.feature_digests,
        "staging_server": state.meta.staging_server,
        "artifacts": [str(p) for p in state.recorder.artifacts],
    }
    state.recorder.journal.close(remove=True)  # its events now travel with the worker's output


def merge(state: RunState, shipped: dict[str, Any]) -> None:
    """On the controller: one worker's records into the run's recorder."""
    recorder = state.recorder
    for secret in shipped["secrets"]:
        recorder.register_secret(secret)
    worker = replay_events(shipped["events"])
    recorder.scenarios += worker.scenarios
    recorder.populations += worker.populations
    recorder.run_items += worker.run_items
    recorder.attachments.update(worker.attachments)
    servers = [s for s in state.meta.staging_server.split("; ") if s]  # each worker had its own server
    if shipped.get("staging_server") and shipped["staging_server"] not in servers:
        state.meta.staging_server = "; ".join([*servers, shipped["staging_server"]])
    for path in shipped["artifacts"]:
        recorder.register_artifact(Path(path))
    if not state.planned:  # every worker collects the same plan
        state.planned = [scenario_from_event(e) for e in shipped["planned"]]
        state.left_out = [scenario_from_event(e) for e in shipped["left_out"]]
        state.meta.selected, state.meta.deselected = shipped["selected"], shipped["deselected"]
        state.meta.feature_digests = shipped["feature_digests"]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object | None) -> None:
    shipped = getattr(node, "workeroutput", {}).get(KEY)
    if shipped is not None:
        merge(state_of(node.config), shipped)
