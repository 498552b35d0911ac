"""At the provider: issue the replacement of a compromised credential, then kill the compromised one. There is no
overlap window: the compromised credential is dead before its replacement is deployed anywhere.

The replacement is issued first (and persisted by the caller before anything is revoked), because that is the only
order every provider allows and the only one in which a crash loses nothing:
  - Twilio: a new token can only come into being as the secondary; promoting it kills the compromised primary.
  - WhatsApp (Graph): issuing a system-user token needs a valid calling token, so the replacement is issued with the
    compromised one, which is revoked right after.
  - SMTP: there is no API. The operator creates the new password at the provider's console and hands it over, then
    revokes the compromised one there, asked at their terminal or waited for (rotation.providers.revocation, the
    provider rotation's mechanism, used by ProviderEmergency._revoke); only the provider's refusal proves it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from rotation.core.clock import utc_now
from rotation.core.secret import Secret
from rotation.providers.base import Provider

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class ProviderAction:
    at: dt.datetime
    what: str

    def as_evidence(self) -> dict[str, str]:
        return {"at": self.at.astimezone(dt.UTC).isoformat(timespec="milliseconds"), "what": self.what}


def issue_replacement(provider: Provider, compromised: Secret, *, clock: Clock = utc_now) -> tuple[Secret,
                                                                                                  ProviderAction]:
    """The replacement, from the provider (not deployed, the compromised credential still alive)."""
    new = provider.issue(compromised)
    return new, ProviderAction(clock(), f"replacement {new.fingerprint} issued at {provider.name} (not deployed)")
