"""Emergency rotation of a provider credential: the compromised credential dies at the provider before its
replacement is deployed anywhere (no overlap window), then .env, restart, health, proof, log.

What "revoke first" means at each provider, given what its API allows:
  - Twilio: a new token can only come into being as the secondary; promoting it at once kills the compromised
    primary. Both calls run back to back, before .env changes.
  - WhatsApp (Graph): issuing a system-user token needs a valid calling token, so the replacement is issued with the
    compromised one and the compromised one is revoked immediately after, before .env changes.
  - SMTP: there is no API. The compromised password is revoked at the provider's console first (staging: the
    stand-in's console; live: the operator, prompted), then the new one is created there and handed over.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from rotation.core.secret import Secret, fingerprint
from rotation.providers.base import Provider

REVOKE_BEFORE_ISSUE = frozenset({"smtp"})


@dataclass(frozen=True)
class ProviderAction:
    at: dt.datetime
    what: str


@dataclass(frozen=True)
class Revocation:
    new: Secret
    actions: tuple[ProviderAction, ...]
    revoked_at: dt.datetime  # when the provider call that kills the compromised credential returned

    def as_evidence(self) -> list[dict[str, str]]:
        return [{"at": a.at.astimezone(dt.UTC).isoformat(timespec="milliseconds"), "what": a.what}
                for a in self.actions]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def revoke_and_replace(provider: Provider, old: str, *, clock: Callable[[], dt.datetime] = _now) -> Revocation:
    """Kill `old` at the provider and obtain its replacement, in the order the provider allows (module docstring)."""
    actions: list[ProviderAction] = []
    if provider.name in REVOKE_BEFORE_ISSUE:
        provider.retire_old(old, old)
        revoked_at = clock()
        actions.append(ProviderAction(revoked_at, f"compromised {fingerprint(old)} revoked at the provider console"))
        new = Secret(provider.issue(old))
        actions.append(ProviderAction(clock(), f"replacement {fingerprint(new)} created at the provider console"))
        return Revocation(new, tuple(actions), revoked_at)
    new = Secret(provider.issue(old))
    actions.append(ProviderAction(clock(), f"replacement {fingerprint(new)} issued (not deployed)"))
    provider.retire_old(old, new)
    revoked_at = clock()
    verb = "promoted: the compromised primary" if provider.name == "twilio" else "revoked: the compromised token"
    actions.append(ProviderAction(revoked_at, f"{verb} {fingerprint(old)} is dead"))
    return Revocation(new, tuple(actions), revoked_at)
