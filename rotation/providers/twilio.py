"""Twilio auth token (runbook section 3) through the real `twilio` SDK.

Rotation at Twilio: create a secondary token (`accounts.v1.secondary_auth_token().create()`), deploy and test it,
then promote it (`accounts.v1.auth_token_promotion().update()`); the old primary answers 401/20003 from then on.
Staging points the SDK at the stand-in with `LoopbackHttpClient`, which rewrites scheme and host of every URL
(api.twilio.com and accounts.twilio.com alike); live uses the SDK's default endpoints.

Twilio offers no read of the secondary token. A secondary that exists before this rotation creates one shows in the
create answer's `date_created` (ISO 8601), which then precedes the request: `issue` refuses it (ExistingCredential)
rather than take over or destroy someone else's pending token. A test SMS counts as delivered only once Twilio says
`delivered`: its status is polled until a final one, within a bounded wait (`DeliveryWait`).

Only 401 with Twilio's code 20003 ("Authenticate") proves a token refused; any other answer leaves a check UNDECIDED.
Rate limits (429, code 20429) are retried after the Retry-After Twilio sends (within the policy's maximum wait), and
each wait is noted in the adapter's journal for the evidence. The two requests that change something are never sent
again blindly when their answer is lost: the secondary token's create is reconciled by the create answer itself
(Twilio keeps one secondary token, and its description offers no read of it: a second create answers with the token
the lost one made, whose date_created is not before the first request, and it is adopted, recorded as such); the test
SMS carries a reference, and a lost send is looked up by it in the account's message list before anything is sent
again.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from rotation.core import progress
from rotation.core.config import Credential
from rotation.core.secret import Secret
from rotation.providers.base import (
    AnswerLost,
    CheckResult,
    CredentialCheck,
    Delivery,
    DeliveryReport,
    DeliveryWait,
    ExistingCredential,
    Journal,
    Operation,
    ProviderError,
    ProviderUnavailable,
    RegisteredCredential,
    RetryPolicy,
    Transient,
    registered,
    request_reached,
    require_rejected,
    retry_after_s,
    scrub,
    with_retries,
)

T = TypeVar("T")
NAME = "twilio"
AUTHENTICATE = 20003  # the only answer that proves a token refused (401 with this code)
TOO_MANY_REQUESTS = 20429
NOT_FOUND = 20404  # Twilio's answer to a promote with no secondary token (404)
ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # Twilio's To/From: E.164 (twilio.com/docs/glossary/what-e164)
SETTINGS: Mapping[str, str] = {
    "TWILIO_ACCOUNT_SID": "set it to the account SID (AC followed by 32 hex digits) from the Twilio Console",
    "TWILIO_PHONE_NUMBER": "set it to the Twilio number the test SMS is sent from, in E.164 form (+15550100002)",
    "ADMIN_PHONE_NUMBER": "set it to the number that receives the test SMS, in E.164 form (+15550100001)",
}
CLOCK_SKEW = dt.timedelta(seconds=60)  # a secondary created this long before the request predates this rotation
SOURCES: dict[Operation, str] = {
    "check": "GET /2010-04-01/Accounts/{Sid}.json (twilio SDK, HTTP Basic with the token)",
    "issue": "POST /v1/AuthTokens/Secondary (client.accounts.v1.secondary_auth_token().create())",
    "discard": "DELETE /v1/AuthTokens/Secondary (client.accounts.v1.secondary_auth_token().delete())",
    "retire": "POST /v1/AuthTokens/Promote (client.accounts.v1.auth_token_promotion().update())",
    "send": "POST /2010-04-01/Accounts/{Sid}/Messages.json (client.messages.create); after a lost answer, GET "
            "/2010-04-01/Accounts/{Sid}/Messages.json?To=&From= (client.messages.list) looked up by the message's "
            "reference before anything is sent again",
    "report": "GET /2010-04-01/Accounts/{Sid}/Messages/{MessageSid}.json polled until a final status (status, "
              "error_code): only delivered proves delivery",
}
DELIVERED = ("delivered", "read")  # read: a WhatsApp message sent through Twilio, which implies delivered
FINAL_FAILURES = ("failed", "undelivered", "canceled")
# Twilio's meaning of the error codes a message most often ends with (twilio.com/docs/api/errors/<code>)
ERROR_MEANINGS: Mapping[int, str] = {
    21610: "the recipient has unsubscribed (replied STOP)",
    21614: "the 'To' number is not a valid mobile number",
    30001: "queue overflow",
    30002: "account suspended",
    30003: "unreachable destination handset",
    30004: "message blocked",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
    30007: "message filtered by the carrier",
    30008: "unknown error",
    30032: "toll-free number not verified",
    30034: "message from an unregistered number (US A2P 10DLC)",
}


def error_meaning(code: int | None) -> str:
    """`30007 (message filtered by the carrier)`, or the bare code when Twilio's meaning is not listed here."""
    if code is None:
        return "no error code"
    meaning = ERROR_MEANINGS.get(code, f"see twilio.com/docs/api/errors/{code}")
    return f"{code} ({meaning})"


class AnsweringHttpClient(TwilioHttpClient):  # type: ignore[misc]  # the SDK ships no types
    """The SDK's own HTTP client, keeping the last answer's headers (Retry-After) that its exceptions drop."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.answered: Response | None = None

    def request(self, method: str, url: str, params: dict[str, object] | None = None,
                data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None, timeout: float | None = None,
                allow_redirects: bool = False) -> Response:
        self.answered = super().request(method, url, params=params, data=data, headers=headers, auth=auth,
                                        timeout=timeout, allow_redirects=allow_redirects)
        return self.answered

    def retry_after(self) -> float | None:
        headers = self.answered.headers if self.answered is not None else None
        return retry_after_s(headers.get("Retry-After")) if headers else None


class LoopbackHttpClient(AnsweringHttpClient):
    """The SDK's own HTTP client with every request's scheme and host replaced by `base_url` (a stand-in)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        target = urlsplit(base_url)
        self._scheme, self._netloc = target.scheme, target.netloc

    def request(self, method: str, url: str, params: dict[str, object] | None = None,
                data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None, timeout: float | None = None,
                allow_redirects: bool = False) -> Response:
        parts = urlsplit(url)
        rewritten = urlunsplit((self._scheme, self._netloc, parts.path, parts.query, parts.fragment))
        return super().request(method, rewritten, params=params, data=data, headers=headers, auth=auth,
                               timeout=timeout, allow_redirects=allow_redirects)


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    from_number: str
    admin_number: str
    api_base: str | None = None  # staging: the stand-in's base URL; None: Twilio's endpoints
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    delivery: DeliveryWait = field(default_factory=DeliveryWait)

    @classmethod
    def from_env(cls, env: Mapping[str, str], policy: RetryPolicy | None = None,
                 delivery: DeliveryWait | None = None) -> TwilioSettings:
        return cls(env.get("TWILIO_ACCOUNT_SID", "").strip(), env.get("TWILIO_PHONE_NUMBER", "").strip(),
                   env.get("ADMIN_PHONE_NUMBER", "").strip(), env.get("TWILIO_API_BASE") or None,
                   policy or RetryPolicy(), delivery or DeliveryWait())

    def problems(self) -> dict[str, str]:
        """Each setting a later step needs that is missing or unusable, with its fix (checked before any change)."""
        found = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID.fullmatch(self.account_sid) is not None,
                 "TWILIO_PHONE_NUMBER": E164.fullmatch(self.from_number) is not None,
                 "ADMIN_PHONE_NUMBER": E164.fullmatch(self.admin_number) is not None}
        return {name: SETTINGS[name] for name, ok in found.items() if not ok}

    def as_evidence(self) -> dict[str, object]:
        return {"TWILIO_ACCOUNT_SID": self.account_sid, "TWILIO_PHONE_NUMBER": self.from_number,
                "ADMIN_PHONE_NUMBER": self.admin_number}


@dataclass(frozen=True)
class TwilioProvider(RegisteredCredential):
    sources = SOURCES
    settings: TwilioSettings
    credential: Credential = field(default_factory=lambda: registered(NAME))
    name: str = NAME
    journal: Journal = field(default_factory=Journal, compare=False, repr=False)

    def client(self, token: Secret, http: AnsweringHttpClient | None = None) -> Client:
        """A Client is bound to one (SID, token) pair: build a new one for each credential."""
        return Client(self.settings.account_sid, token.reveal(), http_client=http or self._http(), environment={})

    def _http(self) -> AnsweringHttpClient:
        timeout = self.settings.policy.timeout_s
        return (LoopbackHttpClient(self.settings.api_base, timeout) if self.settings.api_base
                else AnsweringHttpClient(timeout=timeout))

    def _call(self, operation: str, token: Secret, call: Callable[[Client], T], *, idempotent: bool = True) -> T:
        """One SDK call with retries: 5xx, 429/20429 (after its Retry-After) and timeouts are transient, anything else
        is raised as it is. A request that is not idempotent is not retried once it reached Twilio (AnswerLost)."""
        def attempt() -> T:
            http = self._http()
            try:
                return call(self.client(token, http))
            except TwilioRestException as exc:
                if exc.status >= 500 or exc.status == 429 or exc.code == TOO_MANY_REQUESTS:
                    raise Transient(f"HTTP {exc.status} (Twilio code {exc.code})", exc.status,
                                    retry_after=http.retry_after()) from None
                raise
            except requests.Timeout as exc:
                raise Transient(f"no answer within {self.settings.policy.timeout_s}s", "timeout",
                                sent=request_reached(exc)) from None
            except requests.ConnectionError as exc:
                sent = request_reached(exc)
                raise Transient("connection closed with no answer" if sent else "connection failed", "connection",
                                sent=sent) from None
        return with_retries(self.settings.policy, NAME, operation, attempt, journal=self.journal,
                            idempotent=idempotent)

    def _failed(self, operation: str, exc: TwilioRestException, *secrets: Secret) -> ProviderError:
        return ProviderError(f"{NAME} {operation}: HTTP {exc.status}, Twilio code {exc.code}: "
                             f"{scrub(str(exc.msg), *secrets)}", status=exc.status, code=exc.code)

    def input_problems(self) -> dict[str, str]:
        """Every .env setting a later step reads that is missing or unusable, with its fix."""
        return self.settings.problems()

    def inputs(self) -> dict[str, object]:
        return self.settings.as_evidence()

    def check(self, credential: Secret) -> CheckResult:
        """GET /2010-04-01/Accounts/{Sid}.json with this token (read-only). ACCEPTED on 200, REFUSED only on 401 with
        code 20003; any other refusal, and an outage that outlasted the retries, is UNDECIDED: it proves nothing."""
        sid = self.settings.account_sid
        try:
            account = self._call("account fetch", credential, lambda c: c.api.accounts(sid).fetch())
        except TwilioRestException as exc:
            refused = (exc.status, exc.code) == (401, AUTHENTICATE)
            detail = scrub(str(exc.msg), credential) if refused else (
                f"no definitive answer: HTTP {exc.status}, Twilio code {exc.code} ({scrub(str(exc.msg), credential)}); "
                f"only 401 with code {AUTHENTICATE} proves a token refused")
            return CheckResult(NAME, False, exc.status, exc.code, detail, credential.fingerprint,
                               CredentialCheck.REFUSED if refused else CredentialCheck.UNDECIDED)
        except ProviderUnavailable as exc:
            return CheckResult(NAME, False, exc.status or "no answer", exc.code,
                               f"no definitive answer: {exc}", credential.fingerprint, CredentialCheck.UNDECIDED)
        detail = f"account {account.sid} '{account.friendly_name}' is {account.status}"
        return CheckResult(NAME, True, 200, None, detail, credential.fingerprint, CredentialCheck.ACCEPTED)

    def issue(self, current: Secret) -> Secret:
        """POST /v1/AuthTokens/Secondary: a new secondary token. A secondary that already existed (the answer's
        date_created precedes the request) is refused with ExistingCredential, nothing changed."""
        asked = dt.datetime.now(dt.UTC)
        create: Callable[[Client], Any] = lambda c: c.accounts.v1.secondary_auth_token().create()  # noqa: E731
        try:
            try:
                created = self._call("secondary token create", current, create, idempotent=False)
            except AnswerLost as lost:
                created = self._call("secondary token create (reconciling)", current, create, idempotent=False)
                self._note_reconciled(lost, asked, created)
        except TwilioRestException as exc:
            raise self._failed("secondary token create", exc, current) from None
        token = created.secondary_auth_token
        if not token:
            raise ProviderError(f"{NAME} secondary token create: the answer holds no token")
        made = created.date_created  # the SDK parses ISO 8601; anything else stays a string
        if not isinstance(made, dt.datetime):
            raise ProviderError(f"{NAME} secondary token create: the answer's date_created {made!r} is not ISO 8601, "
                                "so it cannot tell whether this rotation created the token")
        if made < asked - CLOCK_SKEW:
            raise ExistingCredential(
                f"{NAME}: a secondary auth token created {made.isoformat()} already exists; this rotation did not "
                "create it (Twilio keeps one secondary token and answered with that one)",
                found=f"secondary auth token created {made.isoformat()}", existing=Secret(token))
        return Secret(token)

    def _note_reconciled(self, lost: AnswerLost, asked: dt.datetime, created: object) -> None:
        """The evidence of a lost create's reconciliation: which token the reconciling create answered with."""
        made = getattr(created, "date_created", None)
        token = Secret(str(getattr(created, "secondary_auth_token", "") or ""))
        ours = isinstance(made, dt.datetime) and made >= asked - CLOCK_SKEW
        self.journal.note({
            "operation": f"{NAME} secondary token create", "answer lost": str(lost),
            "reconciled by": "a second create: Twilio keeps one secondary token, and its description offers no read "
                             "of it, so a second create cannot add a second token",
            "secondary token": token.fingerprint,
            "created": made.isoformat() if isinstance(made, dt.datetime) else made,
            "outcome": "adopted: the token the lost create made (created after this rotation's first request)"
                       if ours else "not this rotation's (created before its first request): refused below"})

    def discard_pending(self, current: Secret, pending: Secret | None = None) -> None:
        """DELETE /v1/AuthTokens/Secondary (abandoning a pending rotation); none there is fine."""
        self.delete_secondary(current)

    def delete_secondary(self, current: Secret) -> bool:
        """DELETE /v1/AuthTokens/Secondary. False when there was none."""
        try:
            return bool(self._call("secondary token delete", current,
                                   lambda c: c.accounts.v1.secondary_auth_token().delete()))
        except TwilioRestException as exc:
            if exc.status == 404:
                return False
            raise self._failed("secondary token delete", exc, current) from None

    def retire_old(self, old: Secret, new: Secret) -> None:
        """POST /v1/AuthTokens/Promote: the deployed secondary becomes primary and the old primary dies."""
        try:
            promoted = self._call("promote", new, lambda c: c.accounts.v1.auth_token_promotion().update())
        except TwilioRestException as exc:
            if (exc.status, exc.code) == (404, NOT_FOUND) and self.check(new).accepted and not self.check(old).accepted:
                return  # an earlier attempt promoted it and its answer was lost: the end state is already right
            raise self._failed("promote", exc, old, new) from None
        promoted_token = Secret(promoted.auth_token or "")
        if promoted_token != new:
            raise ProviderError(f"{NAME} promote: the promoted token is {promoted_token.fingerprint}, "
                                f"not the deployed {new.fingerprint}")

    def send_test_message(self, credential: Secret, text: str) -> Delivery:
        """POST .../Messages.json: an SMS to the admin number."""
        s = self.settings
        if not s.admin_number or not s.from_number:
            raise ProviderError(f"{NAME} test SMS: ADMIN_PHONE_NUMBER and TWILIO_PHONE_NUMBER must both be set")
        body = f"{text} (ref {secrets.token_hex(6)})"  # the reference a lost answer is looked up by
        send: Callable[[Client], Any] = lambda c: c.messages.create(  # noqa: E731
            to=s.admin_number, from_=s.from_number, body=body)
        try:
            try:
                message = self._call("test SMS", credential, send, idempotent=False)
            except AnswerLost as lost:
                message = self._find_sent(credential, body, lost) or self._call(
                    "test SMS (its first send is not in the message list)", credential, send, idempotent=False)
        except TwilioRestException as exc:
            raise self._failed("test SMS", exc, credential) from None
        return Delivery(NAME, str(message.sid), str(message.to), str(message.status), time.time())

    def _find_sent(self, credential: Secret, body: str, lost: AnswerLost) -> Any:
        """The message a send whose answer was lost created, found by its body (which carries a reference) among the
        account's messages to the admin number; None when Twilio holds none (then, and only then, it is sent again)."""
        s = self.settings
        try:
            listed = self._call("message list", credential,
                                lambda c: c.messages.list(to=s.admin_number, from_=s.from_number, limit=50))
        except TwilioRestException as exc:
            raise self._failed("message list", exc, credential) from None
        found = next((m for m in listed if m.body == body), None)
        self.journal.note({
            "operation": f"{NAME} test SMS", "answer lost": str(lost),
            "reconciled by": "GET Messages.json?To=&From= (the 50 newest), looked up by the message's reference",
            "outcome": f"found {found.sid}: adopted, not sent again" if found is not None
                       else "not found among the account's messages: sent once more"})
        return found

    def message_status(self, credential: Secret, message_sid: str) -> tuple[str, int | None]:
        """GET .../Messages/{sid}.json: the message's status (queued, sending, sent, delivered ...) and error code."""
        try:
            message = self._call("message fetch", credential, lambda c: c.messages(message_sid).fetch())
        except TwilioRestException as exc:
            raise self._failed("message fetch", exc, credential) from None
        return str(message.status), message.error_code

    def delivery_report(self, credential: Secret, delivery: Delivery) -> DeliveryReport:
        """Poll the message until a final status or the wait ends. Only `delivered` is delivery; `undelivered`,
        `failed`, `canceled` or any error code (`sent` with 30007 ...) fail with the code and its meaning; a message
        still queued, sending or sent (no delivery receipt) when the wait ends fails too."""
        wait = self.settings.delivery
        started = time.monotonic()
        history: list[dict[str, object]] = []
        polls = progress.Polls(progress.task("waiting for Twilio's final status of the test SMS", "polls"),
                               wait.timeout_s, wait.interval_s)
        while True:
            status, error = self.message_status(credential, delivery.message_id)
            elapsed = time.monotonic() - started
            if not history or (history[-1]["status"], history[-1]["error code"]) != (status, error):
                history.append({"status": status, "error code": error, "after s": round(elapsed, 2)})
            last = status in DELIVERED or status in FINAL_FAILURES or bool(error) or elapsed >= wait.timeout_s
            polls.asked(elapsed, last=last)
            if last:
                break
            time.sleep(max(0.0, min(wait.interval_s, wait.timeout_s - elapsed)))
        return self._judge(delivery.message_id, status, error, polls.asks, tuple(history))

    def _judge(self, sid: str, status: str, error: int | None, polls: int,
               history: tuple[dict[str, object], ...]) -> DeliveryReport:
        wait = self.settings.delivery
        seen = f"after {polls} poll{'s' if polls != 1 else ''}"
        if status in DELIVERED and not error:
            return DeliveryReport("delivered", status, None, f"Twilio reports message {sid} {status} {seen}",
                                  self.source("report"), history=history)
        if status in FINAL_FAILURES or error:
            return DeliveryReport("failed", status, error, f"Twilio reports message {sid} {status} with error "
                                  f"{error_meaning(error)} {seen}", self.source("report"), history=history)
        queued = status in ("queued", "accepted", "scheduled")
        hint = ("handed to the carrier, but no delivery receipt came" if status == "sent"
                else "it never left Twilio's queue" if queued else "no final status")
        return DeliveryReport("failed", status, None, f"message {sid} is still {status} after the {wait.timeout_s:g} s "
                              f"wait ({polls} polls): {hint}; only delivered proves delivery",
                              self.source("report"), history=history)

    def expect_rejected(self, credential: Secret) -> CheckResult:
        return require_rejected(self.check(credential))
