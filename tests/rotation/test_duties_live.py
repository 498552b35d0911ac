"""Issue 23 item 2 on the operator's command: `rotation db-key rotate` whose approver is its operator is refused
before anything changes (no backup, .env and data as they were, no run folder, no journal)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from staging.postgres import StagingServer
from tests.rotation.live_crm import LiveCrm, live_crm


@pytest.fixture
def crm(pg: StagingServer, tmp_path: Path) -> Iterator[LiveCrm]:
    with live_crm(pg.admin_dsn, tmp_path, 10) as world:
        yield world


def test_a_live_rotation_approved_by_its_operator_is_refused_before_any_change(crm: LiveCrm) -> None:
    env_before = crm.env_file.read_bytes()
    crm.extra = ("--approver=Test-Operator",)  # the last --approver wins: the operator's own name
    done = crm.rotate()
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    assert "the approver (Test-Operator) is the operator (test-operator)" in done.stdout + done.stderr
    assert crm.env_file.read_bytes() == env_before
    assert not list(crm.env_file.parent.glob(".env.backup.*")) and not list(crm.env_file.parent.glob(".rotation-*"))
    assert not crm.reports.exists() or not any(crm.reports.rglob("*.json*"))
    assert crm.key_in_env() == crm.old_key
