"""WhatsApp access token (runbook section 2) through the Meta Graph API, with `requests`.

Rotation at Meta: a new system-user token (`POST /{v}/{system-user-id}/access_tokens` with appsecret_proof), deployed
and tested with the phone-number GET, then the old token revoked (`/{v}/oauth/revoke`); afterwards the old token
answers 401 with OAuthException code 190. Credentials travel in the Authorization header or a POST body, never
in a URL, except `debug_token`'s input_token, which the API only takes as a query parameter.

Only 401 with code 190 proves a token refused; any other answer leaves a check UNDECIDED. Meta's throttling answers
(codes 4, 17, 80007, 130429, or any error marked `is_transient`) and 5xx are retried, after the Retry-After Meta sends
where it sends one (within the policy's maximum wait), each wait noted in the adapter's journal for the evidence. The
send follows Meta's published description (facebook/openapi, business-messaging-api_v23.0.yaml): `recipient_type`
is required. The token mint and the test message change something at Meta and are never sent again once a request
reached Meta and its answer was lost (see `issue` and `send_test_message`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import requests

from rotation.core.config import Credential
from rotation.core.secret import Secret
from rotation.providers.base import (
    AnswerLost,
    CheckResult,
    CredentialCheck,
    Delivery,
    DeliveryReport,
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

NAME = "whatsapp"
INVALID_TOKEN = 190  # at HTTP 401, the only answer that proves a token refused
# Meta's throttling codes: 4 (app), 17 (user), 80007 (WhatsApp Business Account), 130429 (Cloud API throughput)
THROTTLING = frozenset({4, 17, 80007, 130429})
DEFAULT_SCOPES = ("whatsapp_business_messaging", "whatsapp_business_management")
SOURCES: dict[Operation, str] = {
    "check": "GET /{v}/{phone-number-id} with Authorization: Bearer (requests)",
    "issue": "POST /{v}/{system-user-id}/access_tokens with appsecret_proof",
    "discard": "POST /{v}/oauth/revoke (revoke_token=pending, access_token=current)",
    "retire": "POST /{v}/oauth/revoke (revoke_token=old, access_token=new)",
    "send": "POST /{v}/{phone-number-id}/messages {messaging_product: whatsapp, recipient_type: individual, "
            "type: text}",
    "report": "the Cloud API's answer to the send (a wamid, message_status); delivery is reported only to the "
              "app's webhook",
}
ACCEPTED = "accepted"
E164 = re.compile(r"\+?[1-9][0-9]{6,14}")  # the Cloud API's `to`: a phone number, with or without its +
SETTINGS: Mapping[str, str] = {
    "WHATSAPP_PHONE_NUMBER_ID": "set it to the phone number ID (digits) from WhatsApp Manager > Phone numbers",
    "WHATSAPP_APP_ID": "set it to the Meta app's ID (digits) from the app dashboard",
    "WHATSAPP_APP_SECRET": "set it to the Meta app's secret (app dashboard > Settings > Basic): the token mint "
                           "proves itself with it (appsecret_proof) and the revocation needs it",
    "WHATSAPP_SYSTEM_USER_ID": "set it to the system user's ID (digits) from Business Settings > System users",
    "ADMIN_PHONE_NUMBER": "set it to the number that receives the test message, in E.164 form (+15550100001)",
}


@dataclass(frozen=True)
class GraphSettings:
    phone_number_id: str
    app_id: str
    app_secret: Secret
    system_user_id: str
    admin_number: str
    api_base: str = "https://graph.facebook.com"
    version: str = "v21.0"
    policy: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_env(cls, env: Mapping[str, str], policy: RetryPolicy | None = None) -> GraphSettings:
        app_secret = Secret(env.get("WHATSAPP_APP_SECRET", ""))
        return cls(env.get("WHATSAPP_PHONE_NUMBER_ID", "").strip(), env.get("WHATSAPP_APP_ID", "").strip(),
                   app_secret, env.get("WHATSAPP_SYSTEM_USER_ID", "").strip(),
                   env.get("ADMIN_PHONE_NUMBER", "").strip(),
                   env.get("GRAPH_API_BASE") or "https://graph.facebook.com", env.get("GRAPH_API_VERSION") or "v21.0",
                   policy or RetryPolicy())

    def problems(self) -> dict[str, str]:
        """Each setting a later step needs that is missing or unusable, with its fix (checked before any change)."""
        found = {"WHATSAPP_PHONE_NUMBER_ID": self.phone_number_id.isdigit(), "WHATSAPP_APP_ID": self.app_id.isdigit(),
                 "WHATSAPP_APP_SECRET": bool(self.app_secret),
                 "WHATSAPP_SYSTEM_USER_ID": self.system_user_id.isdigit(),
                 "ADMIN_PHONE_NUMBER": E164.fullmatch(self.admin_number) is not None}
        return {name: SETTINGS[name] for name, ok in found.items() if not ok}

    def as_evidence(self) -> dict[str, object]:
        return {"WHATSAPP_PHONE_NUMBER_ID": self.phone_number_id, "WHATSAPP_APP_ID": self.app_id,
                "WHATSAPP_APP_SECRET": self.app_secret.fingerprint if self.app_secret else "(missing)",
                "WHATSAPP_SYSTEM_USER_ID": self.system_user_id, "ADMIN_PHONE_NUMBER": self.admin_number}


@dataclass(frozen=True)
class GraphAnswer:
    status: int
    body: dict[str, object]

    @property
    def error(self) -> dict[str, object]:
        error = self.body.get("error")
        return error if isinstance(error, dict) else {}


def appsecret_proof(app_secret: Secret, token: Secret) -> str:
    """HMAC-SHA256 of the calling token keyed by the app secret, hex."""
    return hmac.new(app_secret.reveal().encode(), token.reveal().encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WhatsAppProvider(RegisteredCredential):
    sources = SOURCES
    settings: GraphSettings
    credential: Credential = field(default_factory=lambda: registered(NAME))
    name: str = NAME
    journal: Journal = field(default_factory=Journal, compare=False, repr=False)

    def _url(self, node: str) -> str:
        return f"{self.settings.api_base.rstrip('/')}/{self.settings.version}/{node}"

    def _request(self, operation: str, method: str, node: str, *, headers: Mapping[str, str] | None = None,
                 params: Mapping[str, str] | None = None, data: Mapping[str, str] | None = None,
                 json: object = None, idempotent: bool = True) -> GraphAnswer:
        """One Graph call with retries: 5xx, 429, Meta's throttling codes, is_transient errors and timeouts are
        retried (after Meta's Retry-After where it sent one). A request that is not idempotent is not retried once it
        reached Meta (AnswerLost)."""
        policy = self.settings.policy

        def attempt() -> GraphAnswer:
            try:
                response = requests.request(method, self._url(node), timeout=policy.timeout_s, headers=headers,
                                            params=params, data=data, json=json)
            except requests.Timeout as exc:
                raise Transient(f"no answer within {policy.timeout_s}s", "timeout", sent=request_reached(exc)) from None
            except requests.ConnectionError as exc:
                sent = request_reached(exc)
                raise Transient("connection closed with no answer" if sent else "connection failed", "connection",
                                sent=sent) from None
            try:
                body = response.json()
            except ValueError:
                body = {}
            answer = GraphAnswer(response.status_code, body if isinstance(body, dict) else {})
            code = answer.error.get("code")
            if (answer.status >= 500 or answer.status == 429 or code in THROTTLING
                    or answer.error.get("is_transient") is True):
                raise Transient(f"HTTP {answer.status} (Graph code {code})", answer.status,
                                retry_after=retry_after_s(response.headers.get("Retry-After")))
            return answer

        return with_retries(policy, NAME, operation, attempt, journal=self.journal, idempotent=idempotent)

    def _failed(self, operation: str, answer: GraphAnswer, *secrets: Secret) -> ProviderError:
        message = scrub(str(answer.error.get("message", "")), self.settings.app_secret, *secrets)
        code = answer.error.get("code")
        return ProviderError(f"{NAME} {operation}: HTTP {answer.status}, Graph code {code}: {message}",
                             status=answer.status, code=code if isinstance(code, int | str) else None)

    @staticmethod
    def _bearer(token: Secret) -> dict[str, str]:
        return {"Authorization": f"Bearer {token.reveal()}"}

    def input_problems(self) -> dict[str, str]:
        """Every .env setting a later step reads that is missing or unusable, with its fix."""
        return self.settings.problems()

    def inputs(self) -> dict[str, object]:
        return self.settings.as_evidence()

    def check(self, credential: Secret) -> CheckResult:
        """GET /{v}/{phone-number-id} with the token (read-only). ACCEPTED on 200, REFUSED only on 401 with code 190;
        anything else (another code, 190 at another status, an outage that outlasted the retries) is UNDECIDED."""
        try:
            answer = self._request("phone number fetch", "GET", self.settings.phone_number_id,
                                   headers=self._bearer(credential))
        except ProviderUnavailable as exc:
            return CheckResult(NAME, False, exc.status or "no answer", exc.code, f"no definitive answer: {exc}",
                               credential.fingerprint, CredentialCheck.UNDECIDED)
        if answer.status == 200:
            return CheckResult(NAME, True, 200, None,
                               f"phone number {answer.body.get('display_phone_number')} "
                               f"({answer.body.get('verified_name')}, quality {answer.body.get('quality_rating')})",
                               credential.fingerprint, CredentialCheck.ACCEPTED)
        code = answer.error.get("code")
        message = scrub(str(answer.error.get("message", "")), credential, self.settings.app_secret)
        refused = (answer.status, code) == (401, INVALID_TOKEN)
        detail = message if refused else (f"no definitive answer: HTTP {answer.status}, Graph code {code} ({message}); "
                                          f"only 401 with code {INVALID_TOKEN} proves a token refused")
        return CheckResult(NAME, False, answer.status, code if isinstance(code, int | str) else None, detail,
                           credential.fingerprint, CredentialCheck.REFUSED if refused else CredentialCheck.UNDECIDED)

    def introspect(self, credential: Secret) -> dict[str, object]:
        """GET /{v}/debug_token: the token's type, validity, expiry and scopes (no token in the result)."""
        app_token = Secret(f"{self.settings.app_id}|{self.settings.app_secret.reveal()}")
        answer = self._request("debug_token", "GET", "debug_token", params={"input_token": credential.reveal()},
                               headers=self._bearer(app_token))
        data = answer.body.get("data")
        if answer.status != 200 or not isinstance(data, dict):
            raise self._failed("debug_token", answer, credential)
        return {k: data.get(k) for k in ("app_id", "type", "is_valid", "expires_at", "scopes", "user_id")}

    def issue(self, current: Secret) -> Secret:
        """POST /{v}/{system-user-id}/access_tokens: a new system-user token, proven with appsecret_proof."""
        s = self.settings
        form = {"business_app": s.app_id, "scope": ",".join(DEFAULT_SCOPES),
                "appsecret_proof": appsecret_proof(s.app_secret, current), "access_token": current.reveal()}
        try:
            answer = self._request("system-user token create", "POST", f"{s.system_user_id}/access_tokens", data=form,
                                   idempotent=False)
        except AnswerLost as lost:
            raise self._mint_lost(lost) from None
        token = answer.body.get("access_token")
        if answer.status != 200 or not isinstance(token, str) or not token:
            failed = self._failed("system-user token create", answer, current)
            if "appsecret_proof" in str(answer.error.get("message", "")):  # Graph's refusal of the proof (code 100)
                raise ProviderError(f"{failed}. The proof is made with WHATSAPP_APP_SECRET: it is not the app's "
                                    "secret. Nothing was changed: correct it in .env (app dashboard > Settings > "
                                    "Basic) and run the same command again", status=failed.status, code=failed.code)
            raise failed
        return Secret(token)

    def _mint_lost(self, lost: AnswerLost) -> AnswerLost:
        """A mint whose answer was lost may have made a live token. Meta shows a token only in the mint's answer and
        publishes no read of a system user's tokens, so it cannot be found, adopted or revoked from here: nothing is
        sent again, nothing changed here, and the operator is told where to revoke it."""
        s = self.settings
        self.journal.note({"operation": f"{NAME} system-user token create", "answer lost": str(lost),
                           "reconciled by": "nothing: Meta shows a token only in the mint's answer and offers no read "
                                            "of a system user's tokens",
                           "outcome": f"Meta may hold one token for system user {s.system_user_id} that no .env, "
                                      "pending file or evidence holds; not minted again"})
        return AnswerLost(
            f"{NAME} system-user token create: {lost.answer or 'the answer was lost'} after the request reached Meta, "
            f"so Meta may hold "
            f"a new token for system user {s.system_user_id} that this run never saw; it was not minted again and "
            f"nothing changed here. Next: in Business Settings > System users > {s.system_user_id}, revoke its tokens "
            f"for app {s.app_id} other than the one in .env, then rerun", status=lost.status, answer=lost.answer)

    def retire_old(self, old: Secret, new: Secret) -> None:
        """Revoke the old token (authenticated with the new one). Kept behind this one function: the revoke
        endpoint is the least documented part of the Graph API."""
        s = self.settings
        form = {"client_id": s.app_id, "client_secret": s.app_secret.reveal(), "revoke_token": old.reveal(),
                "access_token": new.reveal()}
        answer = self._request("token revoke", "POST", "oauth/revoke", data=form)
        if answer.status == 200 and answer.body.get("success") is True:
            return
        if answer.status == 400 and not self.check(old).accepted:
            return  # revoked by an earlier attempt whose answer was lost
        raise self._failed("token revoke", answer, old, new)

    def discard_pending(self, current: Secret, pending: Secret) -> None:
        """Abandoning a pending rotation: revoke the token it was issued, authenticated with the current one."""
        self.retire_old(pending, current)

    def send_test_message(self, credential: Secret, text: str) -> Delivery:
        """POST /{v}/{phone-number-id}/messages: a WhatsApp text to the admin number."""
        to = self.settings.admin_number
        if not to:
            raise ProviderError(f"{NAME} test message: ADMIN_PHONE_NUMBER must be set")
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
                   "text": {"body": text}}
        try:
            answer = self._request("test message", "POST", f"{self.settings.phone_number_id}/messages",
                                   headers=self._bearer(credential), json=payload, idempotent=False)
        except AnswerLost as lost:
            self.journal.note({"operation": f"{NAME} test message", "answer lost": str(lost),
                               "reconciled by": "nothing: the Cloud API keeps no list of sent messages; what became "
                                                "of it reaches only the app's webhook",
                               "outcome": "not sent again (a second send would duplicate it)"})
            raise AnswerLost(f"{NAME} test message: {lost.answer or 'the answer was lost'} after the request reached "
                             f"Meta, so the message may have been sent to {to}; it was not sent again. Next: see "
                             "whether it arrived (the app's webhook records), then rerun", status=lost.status,
                             answer=lost.answer) from None
        messages = answer.body.get("messages")
        first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else None
        if answer.status != 200 or first is None or not first.get("id"):
            raise self._failed("test message", answer, credential)
        # message_status is in the answer since Graph v17; an answer without it is a plain acceptance
        return Delivery(NAME, str(first["id"]), to, str(first.get("message_status") or ACCEPTED), time.time())

    def delivery_report(self, credential: Secret, delivery: Delivery) -> DeliveryReport:
        """What the send's answer proves: Meta accepted the message (message_status `accepted`), no more; statuses
        after that (sent, delivered, read, failed) reach only the app's webhook. Any other message_status (held for
        quality assessment, paused) is no acceptance."""
        if delivery.status != ACCEPTED:
            return DeliveryReport("failed", delivery.status, None, f"Meta did not accept message "
                                  f"{delivery.message_id} for delivery: its message_status is {delivery.status!r}",
                                  self.source("report"), accepted_by="Meta")
        return DeliveryReport("accepted", delivery.status, None,
                              f"Meta accepted message {delivery.message_id} for {delivery.recipient}; whether it was "
                              "delivered reaches only the app's webhook", self.source("report"), accepted_by="Meta")

    def expect_rejected(self, credential: Secret) -> CheckResult:
        return require_rejected(self.check(credential))
