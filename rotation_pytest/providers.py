"""How a scenario's provider adapters are built: on staging, with the stand-ins' console for new SMTP passwords,
their handset and mailbox as delivery witnesses and a retry policy at stand-in speed; on live, with the operator's
console and the live retry policy, and no witness (delivery is claimed only where the provider proves it)."""

from __future__ import annotations

import pytest

from rotation.core.proof import Evidence
from rotation.providers.factory import ProviderOptions
from staging.provider_standins import STAGING_POLICY, ProviderStandIns


@pytest.fixture
def provider_options(pytestconfig: pytest.Config, standins: ProviderStandIns | None,
                     evidence: Evidence) -> ProviderOptions:
    reason, abandon = pytestconfig.getoption("reason"), bool(pytestconfig.getoption("abandon_pending"))
    if standins is None:
        return ProviderOptions(reason=reason, abandon_pending=abandon)
    for value in standins.secrets():  # every credential the stand-ins know is looked for by the leak scan
        evidence.register_secret(value)
    return ProviderOptions(STAGING_POLICY, standins.smtp_console, standins.witnesses(), reason, abandon)
