"""The one small interface every provider adapter offers, and the bounded retry they share.

    check(credential)           read-only call proving a credential works (accepted) or is refused (status + code)
    issue(current)              a new credential from the provider (or from the operator where there is no API)
    retire_old(old, new)        make the old credential die at the provider (promote / revoke / the operator's console)
    send_test_message(cred, t)  SMS / WhatsApp text / e-mail to the admin recipient
    expect_rejected(credential) the provider's refusal of a retired credential, or CredentialStillAccepted

Errors and logs carry fingerprints (`rotation.keys.fingerprint`) and provider codes, never a credential.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from rotation.core.secret import Secret

T = TypeVar("T")
log = logging.getLogger("rotation.providers")


class ProviderError(RuntimeError):
    """A provider call failed for a reason that is not a refused credential. Never carries a credential."""

    def __init__(self, message: str, *, status: int | str | None = None, code: int | str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class ProviderUnavailable(ProviderError):
    """5xx answers or timeouts persisted through every retry."""


class CredentialStillAccepted(ProviderError):
    """A credential that should be dead still works at the provider."""


class Transient(Exception):
    """Raised inside a retried call for a 5xx, a 4xx the provider calls temporary, or a timeout."""

    def __init__(self, what: str, status: int | str | None = None) -> None:
        super().__init__(what)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: `attempts` tries, waiting first_delay_s, 2x, 4x ... capped at max_delay_s."""

    attempts: int = 4
    first_delay_s: float = 0.5
    max_delay_s: float = 4.0
    timeout_s: float = 10.0

    def delays(self) -> list[float]:
        return [min(self.first_delay_s * 2**i, self.max_delay_s) for i in range(self.attempts - 1)]


FAST = RetryPolicy(attempts=4, first_delay_s=0.01, max_delay_s=0.05, timeout_s=0.5)
"""For staging tests: the same shape, in milliseconds."""


def with_retries(policy: RetryPolicy, provider: str, operation: str, call: Callable[[], T],
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `call`; on Transient wait and try again, up to policy.attempts; then raise ProviderUnavailable."""
    last: Transient | None = None
    for attempt, delay in enumerate([*policy.delays(), None], start=1):
        try:
            return call()
        except Transient as exc:
            last = exc
            log.warning("%s %s: attempt %d/%d failed (%s)%s", provider, operation, attempt, policy.attempts, exc,
                        f"; retrying in {delay:.2f}s" if delay is not None else "")
            if delay is not None:
                sleep(delay)
    assert last is not None
    raise ProviderUnavailable(f"{provider} {operation}: gave up after {policy.attempts} attempts; last answer: {last}",
                              status=last.status) from None


@dataclass(frozen=True)
class CheckResult:
    """A provider's verdict on one credential, safe to record as evidence."""

    provider: str
    accepted: bool
    status: int | str
    code: int | str | None
    detail: str
    credential_fp: str

    def as_evidence(self) -> dict[str, object]:
        return {"provider": self.provider, "accepted": self.accepted, "status": self.status, "code": self.code,
                "detail": self.detail, "credential": self.credential_fp}


@dataclass(frozen=True)
class Delivery:
    """A test message the provider accepted: its id and recipient."""

    provider: str
    message_id: str
    recipient: str
    status: str


class Provider(Protocol):
    name: str             # "twilio", "whatsapp", "smtp"
    credential_type: str  # the rotation log's credential_type: "twilio_token", "whatsapp_token", "smtp_password"
    env_name: str         # the .env variable holding the credential

    def check(self, credential: Secret) -> CheckResult: ...

    def issue(self, current: Secret) -> Secret: ...

    def retire_old(self, old: Secret, new: Secret) -> None: ...

    def send_test_message(self, credential: Secret, text: str) -> Delivery: ...

    def expect_rejected(self, credential: Secret) -> CheckResult: ...


def require_rejected(result: CheckResult) -> CheckResult:
    """Shared by the adapters: a retired credential that still works is an error naming its fingerprint."""
    if result.accepted:
        raise CredentialStillAccepted(
            f"{result.provider}: the retired credential {result.credential_fp} is still accepted ({result.detail})",
            status=result.status, code=result.code)
    return result


def scrub(text: str, *secrets: Secret) -> str:
    """Belt and braces for provider-supplied text put into messages: replace any secret by its fingerprint."""
    for secret in secrets:
        if secret:
            text = text.replace(secret.reveal(), secret.fingerprint)
    return text
