"""Steps shared by every procedure: the runbook's prerequisites (backup, health) and the application's lifecycle."""

from __future__ import annotations

from collections.abc import Callable

from pytest_bdd import given, then, when

from rotation.core import prerequisites
from rotation.core.config import Credential
from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence


@given("the current configuration is backed up")
def backed_up(deployment: Deployment, evidence: Evidence) -> None:
    prerequisites.back_up(deployment, evidence)


@given("the system is healthy before the rotation")
def healthy_before(deployment: Deployment, scenario_credential: Credential | None, evidence: Evidence,
                   notice: Callable[[str], None]) -> None:
    prerequisites.healthy_before(deployment, scenario_credential, evidence, notice)


@when("the application services are stopped")
def app_stopped(deployment: Deployment, scenario_credential: Credential | None, evidence: Evidence) -> None:
    prerequisites.stop_app(deployment, evidence, scenario_credential)


@when("the application services are started")
def app_started(deployment: Deployment, evidence: Evidence) -> None:
    prerequisites.start_app(deployment, evidence)


@when("the application services are restarted")
def app_restarted(deployment: Deployment, evidence: Evidence) -> None:
    prerequisites.restart_app(deployment, evidence)


@then("the system is healthy after the rotation")
def healthy_after(deployment: Deployment, evidence: Evidence) -> None:
    prerequisites.healthy(deployment, evidence, when="after the rotation")


@then("the system is healthy again")
def healthy_again(deployment: Deployment, evidence: Evidence) -> None:
    prerequisites.healthy(deployment, evidence, when="again", reads_data=True)
