"""A Meta Graph API (WhatsApp Cloud API) stand-in: the endpoints the WhatsApp token rotation uses.

    GET  /{v}/{phone-number-id}                     Bearer -> {id, display_phone_number, verified_name, quality_rating}
    GET  /{v}/debug_token?input_token=&access_token={app-id}|{app-secret}  -> {"data": {app_id, type, is_valid, ...}}
    POST /{v}/{system-user-id}/access_tokens        business_app, scope, appsecret_proof, access_token -> {access_token}
    POST /{v}/oauth/revoke                          client_id, client_secret, revoke_token, access_token -> {success}
    POST /{v}/{phone-number-id}/messages            {messaging_product: whatsapp, recipient_type: individual, to,
                                                     type: text, text: {body}}

The phone-number GET and the messages POST follow Meta's published description (facebook/openapi,
business-messaging-api_v23.0.yaml, vendored in staging/contracts/ and pinned by sha256): the send's required fields
(`messaging_product`, `recipient_type`, `to`, `type`; BaseMessageProperties) are enforced with Meta's 400 / code 100.
debug_token, {system-user-id}/access_tokens and oauth/revoke are in no description Meta publishes: the stand-in's
answers there rest on Graph's reference pages (see docs/provider-rotation.md, "What the stand-ins assume").

A revoked or unknown token gets HTTP 401 {"error": {"type": "OAuthException", "code": 190, ...}}. Parameters are read
from the query string or the form body, as Graph does. `appsecret_proof` is checked: HMAC-SHA256 of the calling
token keyed by the app secret. The send's answer carries `message_status` (`accepted`), as Graph v17+ does.

What became of a message reaches only the app's webhook, as with Meta: when `webhook_url` is set, the stand-in posts
the statuses of `outcome` (default: sent, then delivered; or failed with Meta's error 131026) to it, each after its
delay, as Meta's `whatsapp_business_account` change notification signed with X-Hub-Signature-256 (HMAC-SHA256 of the
body keyed by the app secret).

Admin (Python): `GraphStandIn.tokens`, `.revoked`, `.messages`, `.faults`, `.keep_revoked_tokens_valid` (a negative
control: revocation no longer kills a token), `.mint()` (a token as Business Manager would show it once),
`.webhook_url`, `.outcome` (`DELIVERED`, `UNDELIVERABLE`), `.message_status`, `.exchanges` (for the contract tests),
`.auth_outage_for_revoked` (Graph answers a revoked token with its transient error, code 2 `is_transient`, as in
Meta's description's InternalServerError example, which proves nothing about the token).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import requests

from staging.http_standin import Exchange, Fault, Faults, Reply, Request, described_headers, serve

DEFAULT_SCOPES = ("whatsapp_business_messaging", "whatsapp_business_management")
# (seconds after the send, status, Meta's error or None) as the webhook reports them
Outcome = tuple[tuple[float, str, dict[str, object] | None], ...]
DELIVERED: Outcome = ((0.02, "sent", None), (0.04, "delivered", None))
UNDELIVERABLE: Outcome = ((0.02, "sent", None), (0.04, "failed", {"code": 131026, "title": "Message undeliverable"}))


def new_token() -> str:
    """Graph tokens are long opaque strings beginning EAA."""
    return "EAA" + secrets.token_urlsafe(96)


def oauth_error(message: str, subcode: int | None = None) -> Reply:
    error: dict[str, object] = {"message": message, "type": "OAuthException", "code": 190,
                                "fbtrace_id": secrets.token_urlsafe(12)}
    if subcode is not None:
        error["error_subcode"] = subcode
    return Reply(401, {"error": error})


def graph_error(status: int, code: int, message: str, kind: str = "GraphMethodException") -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "code": code,
                                    "fbtrace_id": secrets.token_urlsafe(12)}})


@dataclass
class GraphStandIn:
    version: str = "v21.0"
    app_id: str = field(default_factory=lambda: str(secrets.randbelow(9 * 10**14) + 10**14))
    app_secret: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)  # no secret in a report
    system_user_id: str = field(default_factory=lambda: str(secrets.randbelow(9 * 10**14) + 10**14))
    phone_number_id: str = field(default_factory=lambda: str(secrets.randbelow(9 * 10**14) + 10**14))
    display_phone_number: str = "+1 555-010-0199"
    tokens: set[str] = field(default_factory=set, repr=False)
    revoked: set[str] = field(default_factory=set, repr=False)
    keep_revoked_tokens_valid: bool = False
    auth_outage_for_revoked: bool = False  # a revoked token gets 503 code 2 is_transient (no verdict) instead of 190
    drop_messages: bool = False  # a negative control: accepted (200 with a wamid) but never delivered
    message_status: str = "accepted"  # what the send's answer says (Meta may say held_for_quality_assessment)
    webhook_url: str = ""  # the app's webhook, as configured in Meta's app dashboard
    outcome: Outcome = DELIVERED
    waba_id: str = field(default_factory=lambda: str(secrets.randbelow(9 * 10**14) + 10**14))
    messages: list[dict[str, object]] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list, repr=False)
    webhook_answers: list[int] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- admin -------------------------------------------------------------------------------------------------
    def mint(self) -> str:
        """A system-user token as the Business Manager console would issue it."""
        token = new_token()
        with self.lock:
            self.tokens.add(token)
        return token

    def is_valid(self, token: str) -> bool:
        with self.lock:
            return token in self.tokens and (token not in self.revoked or self.keep_revoked_tokens_valid)

    def delivered_to(self, number: str) -> list[dict[str, object]]:
        with self.lock:
            return [m for m in self.messages if m["to"] == number]

    # --- HTTP --------------------------------------------------------------------------------------------------
    def route(self, request: Request) -> Reply:
        reply = self._route(request)
        with self.lock:
            self.requests.append((request.method, request.path, reply.status))
            self.exchanges.append(Exchange(request.method, request.path, dict(request.query), dict(request.form),
                                           request.headers.get("content-type", ""), reply.status, reply.body,
                                           request.json, described_headers(request.headers)))
        return reply

    def _route(self, request: Request) -> Reply:
        prefix = f"/{self.version}/"
        if not request.path.startswith(prefix):
            return graph_error(400, 2500, f"Unknown path components: {request.path}", "OAuthException")
        node = request.path[len(prefix):]
        if request.method == "GET" and node == "debug_token":
            return self._debug_token(request)
        if node == "oauth/revoke" and request.method in ("GET", "POST"):
            return self._revoke(request)
        token = self._caller_token(request)
        if (invalid := self._token_error(token)) is not None:
            return invalid
        if request.method == "GET" and node == self.phone_number_id:
            return Reply(200, {"id": self.phone_number_id, "display_phone_number": self.display_phone_number,
                               "verified_name": "CRM Communication Engine", "quality_rating": "GREEN"})
        if request.method == "POST" and node == f"{self.system_user_id}/access_tokens":
            return self._issue(request, token)
        if request.method == "POST" and node == f"{self.phone_number_id}/messages":
            return self._message(request)
        return graph_error(400, 100, f"Unsupported {request.method} request. Object with ID '{node}' does not exist")

    @staticmethod
    def _caller_token(request: Request) -> str:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            return header[7:]
        return request.param("access_token")

    def _token_error(self, token: str) -> Reply | None:
        if not token:
            return graph_error(400, 2500, "An active access token must be used to query information about the "
                                          "current user.", "OAuthException")
        if self.is_valid(token):
            return None
        with self.lock:
            revoked = token in self.revoked
        if revoked and self.auth_outage_for_revoked:  # a temporary failure: Meta's code 2, is_transient
            return _unavailable(Fault(fail=503))
        if revoked:
            return oauth_error("Error validating access token: The session has been invalidated because the user "
                               "changed their password or Facebook has changed the session for security reasons.", 460)
        return oauth_error("Invalid OAuth access token - Cannot parse access token")

    def _app_credentials_ok(self, client_id: str, client_secret: str) -> bool:
        return client_id == self.app_id and secrets.compare_digest(client_secret, self.app_secret)

    def _debug_token(self, request: Request) -> Reply:
        app_id, _, app_secret = self._caller_token(request).partition("|")
        if not self._app_credentials_ok(app_id, app_secret):
            return oauth_error("Invalid OAuth access token signature.")
        token = request.param("input_token")
        with self.lock:
            known = token in self.tokens
        data: dict[str, object] = {"app_id": self.app_id, "type": "SYSTEM_USER", "application": "CRM Communication",
                                   "expires_at": 0, "is_valid": self.is_valid(token), "scopes": list(DEFAULT_SCOPES),
                                   "user_id": self.system_user_id}
        if not known:
            data = {"error": {"code": 190, "message": "Invalid OAuth access token."}, "is_valid": False}
        return Reply(200, {"data": data})

    def _issue(self, request: Request, caller: str) -> Reply:
        expected = hmac.new(self.app_secret.encode(), caller.encode(), hashlib.sha256).hexdigest()
        if not secrets.compare_digest(request.param("appsecret_proof"), expected):
            return graph_error(400, 100, "Invalid appsecret_proof provided in the API argument")
        if request.param("business_app") != self.app_id:
            return graph_error(400, 100, "(#100) business_app must be the app the system user is assigned to")
        return Reply(200, {"access_token": self.mint()})

    def _revoke(self, request: Request) -> Reply:
        if not self._app_credentials_ok(request.param("client_id"), request.param("client_secret")):
            return oauth_error("Error validating client secret.")
        if (invalid := self._token_error(request.param("access_token"))) is not None:
            return invalid
        target = request.param("revoke_token")
        with self.lock:
            if target not in self.tokens:
                return graph_error(400, 100, "(#100) The token to revoke is not valid")
            self.revoked.add(target)
        return Reply(200, {"success": True})

    def _message(self, request: Request) -> Reply:
        body = request.json or {}
        given = body.get("text")
        text: dict[str, object] = given if isinstance(given, dict) else {}
        # BaseMessageProperties' required fields, in Meta's description; recipient_type is individual or group
        for required in ("messaging_product", "recipient_type", "to", "type"):
            if not body.get(required):
                return graph_error(400, 100, f"(#100) The parameter {required} is required.")
        if body.get("messaging_product") != "whatsapp" or body.get("recipient_type") not in ("individual", "group") \
                or body.get("type") != "text":
            return graph_error(400, 100, "(#100) Invalid parameter")
        message: dict[str, object] = {"id": "wamid." + secrets.token_urlsafe(24), "to": str(body["to"]),
                                      "body": str(text.get("body", ""))}
        with self.lock:
            if not self.drop_messages:
                self.messages.append(message)
                self._notify_later(str(message["id"]), str(body["to"]))
        wa_id = str(body["to"]).lstrip("+")
        return Reply(200, {"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": wa_id}],
                           "messages": [{"id": message["id"], "message_status": self.message_status}]})

    # --- the app's webhook -------------------------------------------------------------------------------------
    def _notify_later(self, wamid: str, to: str) -> None:
        if self.webhook_url:
            threading.Thread(target=self._notify, args=(wamid, to, self.webhook_url, self.outcome),
                             name="graph-webhook", daemon=True).start()

    def _notify(self, wamid: str, to: str, url: str, outcome: Outcome) -> None:
        started = time.monotonic()
        for after, status, error in outcome:
            time.sleep(max(0.0, after - (time.monotonic() - started)))
            self._post_status(url, wamid, to, status, error)

    def _post_status(self, url: str, wamid: str, to: str, status: str, error: dict[str, object] | None) -> None:
        entry: dict[str, object] = {"id": wamid, "status": status, "timestamp": str(int(time.time())),
                                    "recipient_id": to.lstrip("+")}
        if error is not None:
            entry["errors"] = [error]
        change = {"value": {"messaging_product": "whatsapp", "metadata": {
            "display_phone_number": self.display_phone_number, "phone_number_id": self.phone_number_id},
            "statuses": [entry]}, "field": "messages"}
        body = json.dumps({"object": "whatsapp_business_account",
                           "entry": [{"id": self.waba_id, "changes": [change]}]}).encode()
        signature = "sha256=" + hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()
        try:
            answer = requests.post(url, data=body, timeout=5, headers={"Content-Type": "application/json",
                                                                       "X-Hub-Signature-256": signature}).status_code
        except requests.RequestException:
            answer = 0  # Meta retries a webhook that fails; the stand-in records it and moves on
        with self.lock:
            self.webhook_answers.append(answer)


THROTTLED = {4: "Application request limit reached", 17: "User request limit reached",
             80007: "Rate limit issues", 130429: "Rate limit hit"}
"""Meta's rate-limit codes (business-messaging-api_v23.0.yaml, response TooManyRequests and its examples; the error
codes page of the WhatsApp Cloud API for 130429 "Cloud API message throughput has been reached")."""


def _unavailable(fault: Fault) -> Reply:
    """An injected refusal: a rate limit (429, or a throttling code at another status) as Meta's description shows it
    (error code 4 unless a test chooses 17, 80007 or 130429; `is_transient: true`), else an outage (code 2)."""
    status = fault.fail or 503
    if status == 429 or fault.code in THROTTLED:
        code = fault.code or 4
        return Reply(status, {"error": {"message": THROTTLED.get(code, "Rate limit hit"), "type": "OAuthException",
                                        "code": code, "is_transient": True, "fbtrace_id": secrets.token_urlsafe(12)}})
    if fault.code is not None:  # a test's chosen error (190 at 400, 102 at 401 ...): not marked transient
        return Reply(status, {"error": {"message": "Error validating access token", "type": "OAuthException",
                                        "code": fault.code, "fbtrace_id": secrets.token_urlsafe(12)}})
    return Reply(status, {"error": {"message": "An unexpected error has occurred. Please retry your request later.",
                                    "type": "OAuthException", "code": 2, "is_transient": True,
                                    "fbtrace_id": secrets.token_urlsafe(12)}})


@contextlib.contextmanager
def graph_standin(standin: GraphStandIn | None = None) -> Iterator[GraphStandIn]:
    """Start the stand-in on a free loopback port; `.base_url` says where."""
    standin = standin or GraphStandIn()
    with serve(standin.route, standin.faults, _unavailable) as base_url:
        standin.base_url = base_url
        yield standin
