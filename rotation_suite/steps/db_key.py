"""Steps of runbook section 1, Database Encryption Key Rotation: each calls one step of rotation.db_key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_bdd import given, parsers, then, when

from rotation.core.deployment import Deployment
from rotation.core.preflight import RunContext
from rotation.core.proof import Evidence
from rotation.db_key.preflight import DbKeyPreflight
from rotation.db_key.procedure import DbKeyRotation
from rotation.db_key.safe_state import DEFAULT_NEXT
from rotation_pytest.safe_state import next_command, operator_notice, say_safe_state

REASON = "Scheduled 90-day rotation"


@pytest.fixture
def db_key_rotation(deployment: Deployment, pytestconfig: pytest.Config, run_context: RunContext,
                    evidence: Evidence) -> Iterator[DbKeyRotation]:
    """The rotation; when the scenario ends (passed, failed, Ctrl-C, SIGTERM) it is put in its safe state and the
    run says which, in one line with the next command."""
    rotation = DbKeyRotation(deployment, reason=pytestconfig.getoption("reason") or REASON, scheduled=True,
                             workers=pytestconfig.getoption("workers"),
                             abandon_pending=pytestconfig.getoption("abandon_pending"),
                             staged=not pytestconfig.getoption("stop_the_world"),
                             max_rate=pytestconfig.getoption("max_rate"), run=run_context,
                             leave_unreadable=pytestconfig.getoption("leave_unreadable"),
                             notify=operator_notice(pytestconfig))
    yield rotation
    settled = rotation.settle(evidence, next_command=next_command(pytestconfig, DEFAULT_NEXT))
    say_safe_state(pytestconfig, settled.line, warnings=rotation.warnings,
                   source="rotation.db_key.safe_state, at the end of the scenario")


@pytest.fixture
def db_key_preflight(deployment: Deployment) -> DbKeyPreflight:
    return DbKeyPreflight(deployment)


@given("no other rotation of this database is running and nothing the rotation needs is missing")
def cleared_to_start(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.prepare(evidence)


@given("the CRM database holds client PII encrypted under the current database encryption key")
def data_under_current_key(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.check_current_key(evidence)


@when("a new database encryption key is generated")
def new_key(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.generate_key(evidence)


@then("the values no key opens and the other writers of the encrypted data are found before the application stops")
def unopened_found(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.find_unopened(evidence)


@when("all sensitive data is prepared under the new key while the application still runs")
def staged(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.stage(evidence)


@when("the .env file is updated with the new key")
def env_updated(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.write_env(evidence)


@then("the .env file keeps its restrictive permissions and every other setting")
def env_intact(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.check_env(evidence)


@when("all sensitive data is re-encrypted under the new key")
def reencrypted(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.reencrypt(evidence)


@then("every encrypted value decrypts with the new key to its original plaintext")
def all_under_new_key(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.verify_new_key(evidence)


@then("no encrypted value decrypts with the old key")
def none_under_old_key(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.verify_old_key_dead(evidence)


@when("the rotation is logged")
def logged(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.log(evidence)


@then("the rotation log records it with the previous key hash and the next rotation due date")
def log_row_checked(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.check_logged(evidence)


@then("the encryption key loaded by the application is the new key")
def app_on_new_key(db_key_rotation: DbKeyRotation, evidence: Evidence) -> None:
    db_key_rotation.check_app_key(evidence)


@when("the re-encryption is started with an old key that does not open the data")
def wrong_old_key(db_key_preflight: DbKeyPreflight, evidence: Evidence) -> None:
    db_key_preflight.start_with_wrong_old_key(evidence)


@when(parsers.parse("the re-encryption is started with a new key of {length:d} characters"))
def short_new_key(db_key_preflight: DbKeyPreflight, length: int, evidence: Evidence) -> None:
    db_key_preflight.start_with_short_new_key(length, evidence)


@then("the rotation is refused, naming the data the old key cannot decrypt")
def refused_old_key(db_key_preflight: DbKeyPreflight, evidence: Evidence) -> None:
    db_key_preflight.check_refused_old_key(evidence)


@then("the rotation is refused because the new key is too weak")
def refused_weak_key(db_key_preflight: DbKeyPreflight, evidence: Evidence) -> None:
    db_key_preflight.check_refused_weak_key(evidence)


@then("every encrypted value still decrypts with the current key")
def data_unchanged(db_key_preflight: DbKeyPreflight, evidence: Evidence) -> None:
    db_key_preflight.check_data_unchanged(evidence)
