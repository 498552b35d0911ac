"""How a scenario's provider adapters are built: on staging, with the stand-ins' console for new SMTP passwords,
their mailbox as a delivery witness, Meta's webhook wired to the app stand-in (whose records then prove WhatsApp
delivery) and a retry policy and delivery wait at stand-in speed; on live, with the operator's console, the live
retry policy and delivery wait, and the app's records as proof only where the operator asks for it
(--prove-delivery-from-app): otherwise the WhatsApp and SMTP checks read "accepted", never "delivered"."""

from __future__ import annotations

import dataclasses

import pytest
from parse import with_pattern  # type: ignore[import-untyped]  # parse (pytest-bdd's parser) ships no type information
from pytest_bdd import parsers

from rotation.core.config import Credential
from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence
from rotation.providers.base import DeliveryWait, Provider, RetryPolicy
from rotation.providers.factory import ProviderOptions, rotation_for
from rotation.providers.revocation import Wait
from staging.provider_standins import STAGING_DELIVERY_WAIT, STAGING_POLICY, STAGING_REVOKE_WAIT, ProviderStandIns


@with_pattern(r"[A-Z][A-Za-z]+(?: [a-z]+)+")  # type: ignore[untyped-decorator]  # parse is untyped (above)
def label_type(text: str) -> str:
    """A provider credential's label starts with the provider's capitalised name ("Twilio auth token", "SMTP
    password"), which keeps the provider steps from matching the database key's ("... with the new key")."""
    return text


def provider_step(text: str) -> parsers.parse:
    """A provider step's text, in which {label:Label} matches a provider credential's label."""
    return parsers.parse(text, extra_types={"Label": label_type})


@pytest.fixture
def provider_options(pytestconfig: pytest.Config, standins: ProviderStandIns | None, deployment: Deployment,
                     evidence: Evidence) -> ProviderOptions:
    reason, abandon = pytestconfig.getoption("reason"), bool(pytestconfig.getoption("abandon_pending"))
    replace, wait = bool(pytestconfig.getoption("replace_secondary")), pytestconfig.getoption("delivery_wait")
    revoke = pytestconfig.getoption("revoke_wait")
    max_wait = pytestconfig.getoption("max_retry_wait")
    if standins is None:
        live = RetryPolicy() if max_wait is None else dataclasses.replace(RetryPolicy(), max_wait_s=max_wait)
        return ProviderOptions(live, reason=reason, abandon_pending=abandon, replace_secondary=replace,
                               delivery_wait=DeliveryWait(wait) if wait else DeliveryWait(),
                               prove_from_app=bool(pytestconfig.getoption("prove_delivery_from_app")),
                               revoke_wait=Wait(revoke, min(10.0, revoke / 5)) if revoke is not None else Wait())
    for value in standins.secrets():  # every credential the stand-ins know is looked for by the leak scan
        evidence.register_secret(value)
    standins.connect_webhook(deployment)
    staging_wait = DeliveryWait(wait, STAGING_DELIVERY_WAIT.interval_s) if wait else STAGING_DELIVERY_WAIT
    policy = STAGING_POLICY if max_wait is None else dataclasses.replace(STAGING_POLICY, max_wait_s=max_wait)
    return ProviderOptions(policy, standins.smtp_console, standins.witnesses(), reason, abandon, replace,
                           staging_wait, prove_from_app=True,
                           revoke_wait=Wait(revoke, STAGING_REVOKE_WAIT.interval_s) if revoke is not None else
                           STAGING_REVOKE_WAIT)


@pytest.fixture
def provider_adapter(deployment: Deployment, scenario_credential: Credential | None,
                     provider_options: ProviderOptions) -> Provider:
    """The scenario's provider adapter on its own (troubleshooting asks the provider; it rotates nothing)."""
    return rotation_for(deployment, scenario_credential, provider_options).provider
