"""Steps of runbook sections 2-4: WhatsApp access token, Twilio auth token and SMTP password rotations.

Each step is one call into rotation.providers.procedure.ProviderRotation, which records the evidence (the wire
details go into each item's source) and checks. The credential comes from the scenario's tag and the registry; the
step text names it by its label, which the procedure checks against the tag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pytest_bdd import given, then, when

from rotation.core.config import Credential
from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence
from rotation.providers.factory import ProviderOptions, rotation_for
from rotation.providers.procedure import ProviderRotation, reload_application
from rotation.providers.safe_state import DEFAULT_NEXT
from rotation_pytest.providers import provider_step as step
from rotation_pytest.safe_state import next_command, say_safe_state


@pytest.fixture
def provider_rotation(deployment: Deployment, scenario_credential: Credential | None, provider_options: ProviderOptions,
                      pytestconfig: pytest.Config, evidence: Evidence) -> Iterator[ProviderRotation]:
    """The rotation; when the scenario ends (passed, failed, Ctrl-C, SIGTERM) the run says where it stands, in one
    line with the next command."""
    rotation = rotation_for(deployment, scenario_credential, provider_options)
    yield rotation
    settled = rotation.settle(evidence, next_command=next_command(pytestconfig, DEFAULT_NEXT))
    say_safe_state(pytestconfig, settled.line, source="rotation.providers.safe_state, at the end of the scenario")


@given(step("the application is running with the current {label:Label}"))
def running_with_current(provider_rotation: ProviderRotation, label: str, evidence: Evidence,
                         notice: Callable[[str], None]) -> None:
    provider_rotation.running_with_current(label, evidence, notify=notice)


@when(step("a new {label:Label} is created as the secondary auth token"))
@when(step("a new {label:Label} is generated for the system user"))
@when(step("a new {label:Label} is generated at the email provider"))
def new_credential(provider_rotation: ProviderRotation, evidence: Evidence) -> None:
    provider_rotation.create(evidence)


@then(step("the new {label:Label} is tested before full deployment"))
def tested_before_deployment(provider_rotation: ProviderRotation, evidence: Evidence) -> None:
    provider_rotation.test_before_deployment(evidence)


@when(step("the configuration is updated with the new {label:Label}"))
def configuration_updated(provider_rotation: ProviderRotation, evidence: Evidence) -> None:
    provider_rotation.update_configuration(evidence)


@then(step("the .env file holds the new {label:Label}, keeps mode 0600 and every other setting"))
def configuration_intact(provider_rotation: ProviderRotation, evidence: Evidence) -> None:
    provider_rotation.check_configuration(evidence)


@when("the application is reloaded")
def app_reloaded(deployment: Deployment, scenario_credential: Credential | None, evidence: Evidence) -> None:
    reload_application(deployment, evidence, scenario_credential)


@then(step("the application uses the new {label:Label}"))
def app_uses_new(provider_rotation: ProviderRotation, evidence: Evidence) -> None:
    provider_rotation.check_app_uses_new(evidence)


@when(step("a test {message} is sent to the admin {recipient} with the new {label:Label}"))
def test_message_sent(provider_rotation: ProviderRotation, evidence: Evidence) -> None:
    provider_rotation.send_test_message(evidence)


@then(step("the test {message} is delivered to the admin {recipient}"))
def test_message_delivered(provider_rotation: ProviderRotation, evidence: Evidence) -> None:
    provider_rotation.check_test_message(evidence, delivered=True)


@then(step("the test {message} is accepted by {provider} for the admin {recipient} and no delivery failure is "
           "reported"))
def test_message_accepted(provider_rotation: ProviderRotation, evidence: Evidence) -> None:
    provider_rotation.check_test_message(evidence, delivered=False)


@when(step("the new {label:Label} is promoted to primary"))
@when(step("the old {label:Label} is revoked"))
@when(step("the old {label:Label} is revoked at the email provider"))
def old_retired(provider_rotation: ProviderRotation, evidence: Evidence) -> None:
    provider_rotation.retire_old(evidence)


@then(step("the old {label:Label} is rejected by {provider}"))
def old_rejected(provider_rotation: ProviderRotation, evidence: Evidence) -> None:
    provider_rotation.check_old_rejected(evidence)


@then(step("the new {label:Label} still works and the application is still healthy"))
def new_still_works(provider_rotation: ProviderRotation, evidence: Evidence) -> None:
    provider_rotation.check_new_still_works(evidence)


@when(step("the {label:Label} rotation is logged"))
def rotation_logged(provider_rotation: ProviderRotation, evidence: Evidence) -> None:
    provider_rotation.log(evidence)


@then(step("the rotation log records the {label:Label} rotation with the previous {what}'s hash and the next "
           "rotation due in {days:d} days"))
def rotation_log_row(provider_rotation: ProviderRotation, days: int, evidence: Evidence) -> None:
    provider_rotation.check_logged(days, evidence)
