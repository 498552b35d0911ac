"""The one small interface every provider adapter offers, and the bounded retry they share.

    check(credential)              read-only call proving a credential works (accepted) or is refused (status + code)
    issue(current)                 a new credential from the provider (or from the operator where there is no API)
    discard_pending(current, new)  undo `issue` for a rotation that is abandoned before .env holds the new credential
    retire_old(old, new)           make the old credential die at the provider (promote / revoke / the operator)
    send_test_message(cred, text)  SMS / WhatsApp text / e-mail to the admin recipient; the provider's answer, refusals
                                   included, is kept in the Delivery for the check to judge
    delivery_report(cred, sent)    what the provider itself says became of a test message (Twilio: polled until a final
                                   status, within a bounded wait)
    expect_rejected(credential)    the provider's refusal of a retired credential, or CredentialStillAccepted
    source(operation)              the wire call behind an operation, for the evidence

The credential an adapter rotates (its type, `.env` variable and label) comes from the deployment configuration's
credential registry. Errors and logs carry fingerprints and provider codes, never a credential.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, TypeVar

from rotation.core.config import Credential, default_config
from rotation.core.errors import RotationError
from rotation.core.secret import Secret

T = TypeVar("T")
log = logging.getLogger("rotation.providers")


class ProviderError(RotationError, RuntimeError):
    """A provider call failed for a reason that is not a refused credential. Never carries a credential."""

    def __init__(self, message: str, *, status: int | str | None = None, code: int | str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class ProviderUnavailable(ProviderError):
    """5xx answers or timeouts persisted through every retry."""


class SendAnswerLost(ProviderError):
    """A test message was handed over, but the provider's answer was lost (SMTP: the connection ended after DATA;
    HTTP: no response to the POST). The provider may have acted: look the message up (`message_id`, a nonce in it)
    before sending another, never resend blindly."""

    def __init__(self, message: str, *, status: int | str | None = None, message_id: str = "",
                 recipient: str = "") -> None:
        super().__init__(message, status=status)
        self.message_id, self.recipient = message_id, recipient


class CredentialStillAccepted(ProviderError):
    """A credential that should be dead still works at the provider."""


class ExistingCredential(ProviderError):
    """The provider already holds a pending credential that this rotation did not create (Twilio: a secondary auth
    token someone else left). Nothing was changed; `existing` is that credential as the provider's answer showed it
    (None when the answer did not show it), for discarding it when the operator chose to."""

    def __init__(self, message: str, *, found: str, existing: Secret | None) -> None:
        super().__init__(message)
        self.found, self.existing = found, existing


class AnswerLost(ProviderUnavailable):
    """A request that changes something at the provider (a token mint, a test message) reached it, and its answer was
    lost (the connection dropped after the request was sent, or no answer came in time): the provider may have acted.
    Such a request is never simply sent again; the adapter reconciles first (finds what the lost call did) or stops.
    `answer` says what came instead of the answer ("no answer within 10s", "connection closed with no answer")."""

    def __init__(self, message: str, *, status: int | str | None = None, answer: str = "") -> None:
        super().__init__(message, status=status)
        self.answer = answer


class Transient(RotationError):
    """Raised inside a retried call for a 5xx, a 4xx the provider calls temporary, or a timeout. `retry_after` is the
    wait the provider asked for (its Retry-After header, in seconds), `sent` whether the request reached the provider
    before its answer was lost (a read timeout, a connection dropped after sending)."""

    def __init__(self, what: str, status: int | str | None = None, *, retry_after: float | None = None,
                 sent: bool = False) -> None:
        super().__init__(what)
        self.status, self.retry_after, self.sent = status, retry_after, sent


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: `attempts` tries, waiting first_delay_s, 2x, 4x ... capped at max_delay_s. A wait
    the provider asks for (Retry-After) replaces the backoff's, but one operation never waits more than max_wait_s in
    all: a provider asking for more is answered by giving up, saying so."""

    attempts: int = 4
    first_delay_s: float = 0.5
    max_delay_s: float = 4.0
    timeout_s: float = 10.0
    max_wait_s: float = 120.0

    def delays(self) -> list[float]:
        return [min(self.first_delay_s * 2**i, self.max_delay_s) for i in range(self.attempts - 1)]


def retry_after_s(value: str | None, now: dt.datetime | None = None) -> float | None:
    """An HTTP Retry-After header in seconds: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3); None when absent
    or unreadable. A date in the past is 0."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


class Journal:
    """What an adapter did besides its answer, for the evidence: each wait before a retry (and why: the provider's
    Retry-After or the backoff), each lost answer and how it was reconciled. The procedure takes the entries after
    each step that called the provider. Thread-safe; holds no credential (fingerprints only)."""

    def __init__(self) -> None:
        self._entries: list[dict[str, object]] = []
        self._lock = threading.Lock()

    def note(self, entry: dict[str, object]) -> None:
        with self._lock:
            self._entries.append(entry)

    def take(self) -> list[dict[str, object]]:
        with self._lock:
            taken, self._entries = self._entries, []
        return taken

    def peek(self) -> list[dict[str, object]]:
        with self._lock:
            return list(self._entries)


def provider_journal(provider: object) -> list[dict[str, object]]:
    """The entries an adapter noted since last asked (an adapter without a journal noted none)."""
    journal = getattr(provider, "journal", None)
    return journal.take() if isinstance(journal, Journal) else []


def with_retries(policy: RetryPolicy, provider: str, operation: str, call: Callable[[], T],
                 sleep: Callable[[float], None] = time.sleep, *, journal: Journal | None = None,
                 idempotent: bool = True) -> T:
    """Run `call`; on Transient wait and try again, up to policy.attempts; then raise ProviderUnavailable.
    The wait is the provider's Retry-After when it gave one, else the backoff's; all waits of one operation together
    stay within policy.max_wait_s (a longer wait asked for ends the retries, saying so). A request that is not
    idempotent and reached the provider before its answer was lost is not retried: AnswerLost, for the caller to
    reconcile. Every wait is noted in the journal."""
    last: Transient | None = None
    waited = 0.0
    for attempt, backoff in enumerate([*policy.delays(), None], start=1):
        try:
            return call()
        except Transient as exc:
            last = exc
            if exc.sent and not idempotent:
                if journal is not None:
                    journal.note({"operation": f"{provider} {operation}", "attempt": attempt, "answer": str(exc),
                                  "what it means": "the request reached the provider; its answer was lost"})
                raise AnswerLost(f"{provider} {operation}: {exc} after the request reached {provider}: it may have "
                                 "acted, so the request is not sent again blindly", status=exc.status,
                                 answer=str(exc)) from None
            if backoff is None:
                break
            delay = exc.retry_after if exc.retry_after is not None else backoff
            why = f"Retry-After: {exc.retry_after:g} s" if exc.retry_after is not None else "backoff"
            if waited + delay > policy.max_wait_s:
                if journal is not None:
                    journal.note({"operation": f"{provider} {operation}", "attempt": attempt, "answer": str(exc),
                                  "asked to wait s": delay, "gave up": f"more than the {policy.max_wait_s:g} s this "
                                                                       "step may wait"})
                raise ProviderUnavailable(
                    f"{provider} {operation}: asked to wait {delay:g} s ({why}) after {exc}, more than the "
                    f"{policy.max_wait_s - waited:g} s left of the {policy.max_wait_s:g} s this step may wait; "
                    "rerun later", status=exc.status) from None
            log.warning("%s %s: attempt %d/%d failed (%s); retrying in %.2fs (%s)", provider, operation, attempt,
                        policy.attempts, exc, delay, why)
            started = time.monotonic()
            sleep(delay)
            slept = time.monotonic() - started
            waited += delay
            if journal is not None:
                journal.note({"operation": f"{provider} {operation}", "attempt": attempt, "answer": str(exc),
                              "waited s": round(slept, 3), "because": why})
    if last is None:  # unreachable: the loop either returned or caught a Transient
        raise ProviderUnavailable(f"{provider} {operation}: no attempt was made")
    raise ProviderUnavailable(f"{provider} {operation}: gave up after {policy.attempts} attempts; last answer: {last}",
                              status=last.status) from None


def request_reached(exc: BaseException) -> bool:
    """Whether a failed HTTP request (requests) reached the server before its answer was lost: a read timeout or a
    connection dropped after sending did; a refused connection or a connect timeout did not."""
    import requests  # noqa: PLC0415  (only the HTTP adapters call this)
    from urllib3.exceptions import NewConnectionError  # noqa: PLC0415

    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ReadTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the cause
    return not isinstance(reason, NewConnectionError | ConnectionRefusedError)


class CredentialCheck(enum.Enum):
    """What one answer from a provider proves about a credential. Only a definitive answer decides: REFUSED is a
    permanent authentication failure (SMTP 535 5.7.8 or another 5.7.x permanent reply, RFC 4954 / RFC 3463; Twilio
    401 with code 20003; Meta 401 with code 190), ACCEPTED is a successful authenticated call, and everything else
    (a 4xx SMTP reply such as 454 4.7.0, a 5xx HTTP answer, a timeout, an unexpected code) is UNDECIDED: it proves
    nothing, is never counted as a refusal, and a later check asks again."""

    REFUSED = "refused"
    ACCEPTED = "accepted"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class CheckResult:
    """A provider's verdict on one credential, safe to record as evidence. `verdict` is the tri-state answer; when an
    adapter leaves it unset it is read from `accepted` (adapters that know better set it, UNDECIDED included)."""

    provider: str
    accepted: bool
    status: int | str
    code: int | str | None
    detail: str
    credential_fp: str
    verdict: CredentialCheck | None = None

    @property
    def answer(self) -> CredentialCheck:
        if self.verdict is not None:
            return self.verdict
        return CredentialCheck.ACCEPTED if self.accepted else CredentialCheck.REFUSED

    def as_evidence(self) -> dict[str, object]:
        return {"provider": self.provider, "accepted": self.accepted, "answer": self.answer.value,
                "status": self.status, "code": self.code, "detail": self.detail, "credential": self.credential_fp}


@dataclass(frozen=True)
class DeliveryWait:
    """How long the check of a test message waits for a final word on it, polling every `interval_s`."""

    timeout_s: float = 120.0
    interval_s: float = 5.0


@dataclass(frozen=True)
class Delivery:
    """A test message handed to the provider: its id, recipient, the provider's answer (Twilio's first status,
    Meta's message_status, the relay's reply to DATA) and when it was sent (epoch seconds)."""

    provider: str
    message_id: str
    recipient: str
    status: str
    sent_at: float = 0.0

    def as_evidence(self) -> dict[str, object]:
        return {"provider": self.provider, "message": self.message_id, "recipient": self.recipient,
                "provider's answer": self.status}


Verdict = Literal["delivered", "accepted", "failed"]


@dataclass(frozen=True)
class DeliveryReport:
    """What became of a test message, as far as anyone can tell: `delivered` only when delivery is proven (Twilio's
    final status, the app's own delivery record, a staging mailbox), `accepted` when the provider took it and nothing
    proves more (`accepted_by` says who: "Meta", "the relay (250)"), `failed` when anyone says it did not arrive or a
    required proof did not come within its wait. `history` is what was seen on the way, in order."""

    verdict: Verdict
    status: str                # the provider's own word for it: Twilio's message status, the relay's reply ...
    error_code: int | str | None
    detail: str
    source: str
    accepted_by: str = "the provider"
    history: tuple[dict[str, object], ...] = ()

    @property
    def reading(self) -> str:
        """The verdict in words: never "delivered" unless delivery is proven."""
        if self.verdict == "accepted":
            return f"accepted by {self.accepted_by}; delivery not proven"
        return self.verdict

    def as_evidence(self) -> dict[str, object]:
        shown: dict[str, object] = {"verdict": self.reading, "provider status": self.status,
                                    "error code": self.error_code, "detail": self.detail}
        return shown | ({"status history": list(self.history)} if self.history else {})


class DeliveryWitness(Protocol):
    """Someone besides the sending API who can tell what became of a test message: the app's own delivery records
    (live and staging), a stand-in's mailbox (staging)."""

    @property
    def source(self) -> str: ...

    def report(self, delivery: Delivery) -> DeliveryReport: ...


Operation = Literal["check", "issue", "discard", "retire", "send", "report"]


class RegisteredCredential:
    """What every adapter derives from the credential the registry holds for it, and the provider API call each
    operation makes (for the evidence's `source`). Adapters are frozen dataclasses with a `credential` field."""

    credential: Credential
    sources: ClassVar[dict[Operation, str]]

    @property
    def credential_type(self) -> str:
        return self.credential.type

    @property
    def env_name(self) -> str:
        return self.credential.env

    def source(self, operation: Operation) -> str:
        return self.sources[operation]


class Provider(Protocol):
    @property
    def name(self) -> str: ...  # the provider: "twilio", "whatsapp", "smtp" (the registry's `provider`)

    @property
    def credential(self) -> Credential: ...  # from the credential registry

    @property
    def credential_type(self) -> str: ...  # the rotation log's credential_type

    @property
    def env_name(self) -> str: ...  # the .env variable holding the credential

    def check(self, credential: Secret) -> CheckResult: ...

    def issue(self, current: Secret) -> Secret: ...

    # discard_pending / retire_old: None when the call itself revoked (an API call); a revocation.RevocationAct when
    # someone else was asked to (the operator at the SMTP provider's console), saying who, how and what they said
    def discard_pending(self, current: Secret, pending: Secret) -> object: ...

    def retire_old(self, old: Secret, new: Secret) -> object: ...

    def send_test_message(self, credential: Secret, text: str) -> Delivery: ...

    def delivery_report(self, credential: Secret, delivery: Delivery) -> DeliveryReport: ...

    def expect_rejected(self, credential: Secret) -> CheckResult: ...

    def source(self, operation: Operation) -> str: ...


@functools.cache
def registered(provider: str) -> Credential:
    """The built-in registry's credential issued by this provider (for adapters built without a configuration)."""
    return next(c for c in default_config().credentials if c.provider == provider)


def require_rejected(result: CheckResult) -> CheckResult:
    """Shared by the adapters: a retired credential that still works is an error naming its fingerprint; one whose
    answer decides nothing (CredentialCheck.UNDECIDED) is an error too, never taken for a refusal."""
    if result.answer is CredentialCheck.ACCEPTED:
        raise CredentialStillAccepted(
            f"{result.provider}: the retired credential {result.credential_fp} is still accepted ({result.detail})",
            status=result.status, code=result.code)
    if result.answer is CredentialCheck.UNDECIDED:
        raise ProviderError(f"{result.provider}: no definitive answer about the retired credential "
                            f"{result.credential_fp} ({result.status} {result.detail}); ask again later",
                            status=result.status, code=result.code)
    return result


def scrub(text: str, *secrets: Secret) -> str:
    """Belt and braces for provider-supplied text put into messages: replace any secret by its fingerprint."""
    for secret in secrets:
        if secret:
            text = text.replace(secret.reveal(), secret.fingerprint)
    return text
