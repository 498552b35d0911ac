"""revoke_and_replace against the real stand-ins through the real clients: the compromised credential is dead at the
provider when it returns, the replacement works, and the order is the one each provider allows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotation.core.secret import fingerprint
from rotation.emergency.revoke import revoke_and_replace
from rotation.providers.factory import provider_for
from staging.provider_standins import STAGING_POLICY, ProviderStandIns, provider_standins


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderStandIns]:
    with provider_standins(tmp_path_factory.mktemp("providers")) as started:
        yield started


@pytest.mark.parametrize(("name", "env_name", "first_action"), [
    ("twilio", "TWILIO_AUTH_TOKEN", "issued (not deployed)"),
    ("whatsapp", "WHATSAPP_ACCESS_TOKEN", "issued (not deployed)"),
    ("smtp", "SMTP_PASSWORD", "revoked at the provider console"),
])
def test_compromised_credential_is_dead_and_replacement_works(standins: ProviderStandIns, tmp_path: Path,
                                                              name: str, env_name: str, first_action: str) -> None:
    env = standins.env()
    provider = provider_for(name, env, policy=STAGING_POLICY, smtp_console=standins.smtp_console)
    old = env[env_name]
    assert provider.check(old).accepted
    revocation = revoke_and_replace(provider, old)
    assert first_action in revocation.actions[0].what
    assert revocation.actions[0].at <= revocation.actions[-1].at
    assert not provider.check(old).accepted, f"{name}: the compromised credential still works"
    assert provider.check(revocation.new).accepted, f"{name}: the replacement does not work"
    assert repr(revocation.new) == f"<secret {fingerprint(revocation.new)}>"
    assert old not in str(revocation.as_evidence()) and revocation.new not in str(revocation.as_evidence())
