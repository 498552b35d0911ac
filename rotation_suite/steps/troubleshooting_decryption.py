"""Steps of the runbook's Troubleshooting "Decryption fails after key rotation": the diagnosis and the repair are in
rotation.db_key.decryption; staging kills a real rotation part-way (the plugin's `interrupted_rotation`,
rotation_pytest.troubles)."""

from __future__ import annotations

import pytest
from pytest_bdd import given, then, when

from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence
from rotation.db_key.decryption import DecryptionTroubleshooting
from rotation_pytest.troubles import InterruptedRotation


@pytest.fixture
def decryption_trouble(deployment: Deployment, pytestconfig: pytest.Config) -> DecryptionTroubleshooting:
    return DecryptionTroubleshooting(deployment, workers=pytestconfig.getoption("workers"))


@given("a database key rotation died part-way through re-encrypting the client data")
def rotation_died(interrupted_rotation: InterruptedRotation, evidence: Evidence) -> None:
    interrupted_rotation.run(evidence)


@given("one value the rotation has not reached yet is under neither key")
def value_under_neither(interrupted_rotation: InterruptedRotation, evidence: Evidence) -> None:
    interrupted_rotation.break_unreached_value(evidence)


@when("the encrypted values are counted per key")
def counted(decryption_trouble: DecryptionTroubleshooting, evidence: Evidence) -> None:
    decryption_trouble.count_per_key(evidence)


@then("some values are under the new key, the others under the old key, and none under neither")
def partly_rotated(decryption_trouble: DecryptionTroubleshooting, evidence: Evidence) -> None:
    decryption_trouble.check_partly_rotated(evidence)


@when("the interrupted re-encryption is finished with the old key from the newest backup")
def repaired(decryption_trouble: DecryptionTroubleshooting, evidence: Evidence) -> None:
    decryption_trouble.finish_reencryption(evidence)


@then("the repair reports every value verified under the new key")
def repair_ok(decryption_trouble: DecryptionTroubleshooting, evidence: Evidence) -> None:
    decryption_trouble.check_repaired(evidence)


@then("every value is under the new key and none under the old key or neither")
def all_new(decryption_trouble: DecryptionTroubleshooting, evidence: Evidence) -> None:
    decryption_trouble.check_all_new(evidence)


@then("the count names that value by its row and column as under neither key")
@then("the count still names that value by its row and column as under neither key")
def names_broken_value(decryption_trouble: DecryptionTroubleshooting, interrupted_rotation: InterruptedRotation,
                       evidence: Evidence) -> None:
    decryption_trouble.check_names_unreadable(interrupted_rotation.broken, evidence)


@then("the repair stops and names that value by its row and column")
def repair_names_broken_value(decryption_trouble: DecryptionTroubleshooting,
                              interrupted_rotation: InterruptedRotation, evidence: Evidence) -> None:
    decryption_trouble.check_repair_names(interrupted_rotation.broken, evidence)


@then("the re-encryption stays unfinished")
def unfinished(decryption_trouble: DecryptionTroubleshooting, evidence: Evidence) -> None:
    decryption_trouble.check_unfinished(evidence)
