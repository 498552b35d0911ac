"""Steps shared by every procedure: the runbook's prerequisites (backup, health) and the application's lifecycle."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_bdd import given, then, when

from rotation.core import app_control, envfile
from staging.world import World


@pytest.fixture
def backup_file() -> dict[str, Path]:
    return {}


@given("the current configuration is backed up")
def backed_up(world: World, backup_file: dict[str, Path], evidence) -> None:
    path = envfile.backup(world.env_file)
    backup_file["path"] = path
    evidence.record("env backup", {"path": path.name, "mode": oct(envfile.file_mode(path))},
                    source=f"cp {world.env_file.name} {path.name} (atomic, mode 0600)")
    assert envfile.file_mode(path) == 0o600, f"{path.name} has mode {oct(envfile.file_mode(path))}, not 0600"


@given("the application is running with the current key")
@given("the system is healthy before the rotation")
def healthy_before(world: World, evidence) -> None:
    result = app_control.health(world.app.health_url)
    evidence.record("health before", {"status": result.status_code, "body": result.body},
                    source=f"GET {world.app.health_url}")
    assert result.healthy, f"the app is not healthy before the rotation: {result.status_code} {result.body}"


@when("the application services are stopped")
def app_stopped(world: World, evidence) -> None:
    app_control.run(world.app.stop)
    result = app_control.wait_for_health(world.app.health_url, healthy=False, timeout_s=world.app.health_timeout_s)
    evidence.record("app stopped", {"health_status": result.status_code}, source=world.app.stop)


@when("the application services are started")
def app_started(world: World, evidence) -> None:
    app_control.run(world.app.start)
    evidence.record("app started", {"command": world.app.start}, source=world.app.start)


@then("the system is healthy after the rotation")
def healthy_after(world: World, evidence) -> None:
    result = app_control.wait_for_health(world.app.health_url, timeout_s=world.app.health_timeout_s)
    evidence.record("health after", {"status": result.status_code, "body": result.body},
                    source=f"GET {world.app.health_url}")
    assert result.healthy, f"the app is not healthy after the rotation: {result.status_code} {result.body}"
