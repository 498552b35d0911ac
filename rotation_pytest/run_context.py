"""The run context a procedure checks and holds before its first change: where the evidence goes and what signs it
(the preflight tries both), and the run lock (rotation.core.lock), released when the scenario ends however it ends.
A kill -9 ends the lock's session, so the server drops the advisory lock; the record it leaves is a stale lock that
the next run refuses, naming it, until `--take-over-lock`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotation.core.config import Credential
from rotation.core.deployment import Deployment
from rotation.core.lock import RunLock
from rotation.core.preflight import RunContext
from rotation_pytest.evidence import reports_dir
from rotation_pytest.fixtures import operator_of, target_of


@pytest.fixture
def run_context(request: pytest.FixtureRequest, deployment: Deployment,
                scenario_credential: Credential | None) -> Iterator[RunContext]:
    config = request.config
    key = config.getoption("signing_key")
    procedure = f"{scenario_credential.type} rotation" if scenario_credential else request.node.name
    lock = RunLock(deployment.dsn, operator=operator_of(config), change_id=config.getoption("change_id"),
                   procedure=procedure, take_over=bool(config.getoption("take_over_lock")))
    context = RunContext(reports_dir=reports_dir(config), signing_key=Path(key) if key else None,
                         signing_required=target_of(config) == "live", lock=lock)
    try:
        yield context
    finally:
        lock.release()
