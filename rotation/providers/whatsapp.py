"""WhatsApp access token (runbook section 2) through the Meta Graph API, with `requests`.

Rotation at Meta: a new system-user token (`POST /{v}/{system-user-id}/access_tokens` with appsecret_proof), deployed
and tested with the phone-number GET, then the old token revoked (`/{v}/oauth/revoke`); afterwards the old token
answers 401 with OAuthException code 190. Credentials travel in the Authorization header or a POST body, never
in a URL, except `debug_token`'s input_token, which the API only takes as a query parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import requests

from rotation.core.config import Credential
from rotation.core.secret import Secret
from rotation.providers.base import (
    CheckResult,
    Delivery,
    DeliveryReport,
    Operation,
    ProviderError,
    RegisteredCredential,
    RetryPolicy,
    Transient,
    registered,
    require_rejected,
    scrub,
    with_retries,
)

NAME = "whatsapp"
INVALID_TOKEN = 190
DEFAULT_SCOPES = ("whatsapp_business_messaging", "whatsapp_business_management")
SOURCES: dict[Operation, str] = {
    "check": "GET /{v}/{phone-number-id} with Authorization: Bearer (requests)",
    "issue": "POST /{v}/{system-user-id}/access_tokens with appsecret_proof",
    "discard": "POST /{v}/oauth/revoke (revoke_token=pending, access_token=current)",
    "retire": "POST /{v}/oauth/revoke (revoke_token=old, access_token=new)",
    "send": "POST /{v}/{phone-number-id}/messages {messaging_product: whatsapp, type: text}",
    "report": "the Cloud API's answer to the send (a wamid, message_status); delivery is reported only to the "
              "app's webhook",
}
ACCEPTED = "accepted"


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
        return cls(env["WHATSAPP_PHONE_NUMBER_ID"], env.get("WHATSAPP_APP_ID", ""), app_secret,
                   env.get("WHATSAPP_SYSTEM_USER_ID", ""), env.get("ADMIN_PHONE_NUMBER", ""),
                   env.get("GRAPH_API_BASE") or "https://graph.facebook.com", env.get("GRAPH_API_VERSION") or "v21.0",
                   policy or RetryPolicy())


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

    def _url(self, node: str) -> str:
        return f"{self.settings.api_base.rstrip('/')}/{self.settings.version}/{node}"

    def _request(self, operation: str, method: str, node: str, *, headers: Mapping[str, str] | None = None,
                 params: Mapping[str, str] | None = None, data: Mapping[str, str] | None = None,
                 json: object = None) -> GraphAnswer:
        """One Graph call with retries; 5xx, 429, is_transient errors and timeouts are retried."""
        policy = self.settings.policy

        def attempt() -> GraphAnswer:
            try:
                response = requests.request(method, self._url(node), timeout=policy.timeout_s, headers=headers,
                                            params=params, data=data, json=json)
            except requests.Timeout:
                raise Transient(f"no answer within {policy.timeout_s}s", "timeout") from None
            except requests.ConnectionError:
                raise Transient("connection failed", "connection") from None
            try:
                body = response.json()
            except ValueError:
                body = {}
            answer = GraphAnswer(response.status_code, body if isinstance(body, dict) else {})
            if answer.status >= 500 or answer.status == 429 or answer.error.get("is_transient") is True:
                raise Transient(f"HTTP {answer.status} (Graph code {answer.error.get('code')})", answer.status)
            return answer

        return with_retries(policy, NAME, operation, attempt)

    def _failed(self, operation: str, answer: GraphAnswer, *secrets: Secret) -> ProviderError:
        message = scrub(str(answer.error.get("message", "")), self.settings.app_secret, *secrets)
        code = answer.error.get("code")
        return ProviderError(f"{NAME} {operation}: HTTP {answer.status}, Graph code {code}: {message}",
                             status=answer.status, code=code if isinstance(code, int | str) else None)

    @staticmethod
    def _bearer(token: Secret) -> dict[str, str]:
        return {"Authorization": f"Bearer {token.reveal()}"}

    def check(self, credential: Secret) -> CheckResult:
        """GET /{v}/{phone-number-id} with the token (read-only)."""
        answer = self._request("phone number fetch", "GET", self.settings.phone_number_id,
                               headers=self._bearer(credential))
        if answer.status == 200:
            return CheckResult(NAME, True, 200, None,
                               f"phone number {answer.body.get('display_phone_number')} "
                               f"({answer.body.get('verified_name')}, quality {answer.body.get('quality_rating')})",
                               credential.fingerprint)
        if answer.status in (400, 401) and answer.error.get("code") == INVALID_TOKEN:
            return CheckResult(NAME, False, answer.status, INVALID_TOKEN,
                               scrub(str(answer.error.get("message", "")), credential), credential.fingerprint)
        raise self._failed("phone number fetch", answer, credential)

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
        answer = self._request("system-user token create", "POST", f"{s.system_user_id}/access_tokens", data=form)
        token = answer.body.get("access_token")
        if answer.status != 200 or not isinstance(token, str) or not token:
            raise self._failed("system-user token create", answer, current)
        return Secret(token)

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
        payload = {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": text}}
        answer = self._request("test message", "POST", f"{self.settings.phone_number_id}/messages",
                               headers=self._bearer(credential), json=payload)
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
