"""A Twilio REST stand-in: the endpoints the rotation uses, with Twilio's auth rules, date formats and error bodies.

    POST   /v1/AuthTokens/Secondary                  201 {account_sid, secondary_auth_token, date_created, url, ...}
    DELETE /v1/AuthTokens/Secondary                  204; 404/20404 when there is none
    POST   /v1/AuthTokens/Promote                    200 {account_sid, auth_token, date_created, date_updated, url};
                                                     404/20404 when there is no secondary token
    GET    /2010-04-01/Accounts/{Sid}.json           200 {sid, friendly_name, status, type, owner_account_sid, uri}
    POST   /2010-04-01/Accounts/{Sid}/Messages.json  201 {sid, status: queued, to, from, body, ...}
    GET    /2010-04-01/Accounts/{Sid}/Messages.json?To=&From=&PageSize=   200 {messages: [...] newest first, page, ...}
    GET    /2010-04-01/Accounts/{Sid}/Messages/{MessageSid}.json   200 the message with its current status

Dates follow Twilio's API descriptions: ISO 8601 in the accounts v1 resources ("2015-07-31T04:00:00Z"), RFC 2822 in
the 2010-04-01 API ("Fri, 24 May 2019 17:18:27 +0000"). HTTP Basic (account SID, auth token) is checked on every
call; the primary and the secondary token both authenticate. Promotion makes the secondary the primary and the old
primary answers 401/20003 from then on. The optional `SuppressEmailNotification` (form field on POST, query on
DELETE) is accepted and ignored.

Twilio keeps one secondary token and documents neither a read of it nor what creating one answers while one exists:
the stand-in answers such a create with the existing token, unchanged, its original date_created showing (see
docs/provider-rotation.md, "What the stand-ins assume").

A message goes through its `Lifecycle` (queued, sending, sent, then delivered or a failure with an error code, each
after a configurable delay since it was created); the create answer always says queued.

Admin (Python): `TwilioStandIn.primary`, `.secondary`, `.plant_secondary(created)` (a secondary someone else left),
`.lifecycle` (how the next messages end: `Lifecycle.delivered()`, `Lifecycle.ending("undelivered", 30003)`,
`Lifecycle.stuck("queued")` ...), `.messages`, `.requests`, `.exchanges` (every request and answer, for the contract
tests), `.faults`, `.keep_old_tokens_valid` (a negative control: promotion no longer kills the old primary),
`.auth_outage_for_retired` (Twilio's authentication is temporarily failing for the retired token: 503/20500, which
proves nothing about it, twilio.com/docs/errors/20500).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from staging.http_standin import Exchange, Fault, Faults, Reply, Request, serve

AUTHENTICATE = {"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401}
ACCOUNT = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})\.json$")
MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages\.json$")
MESSAGE = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages/(?P<msg>SM[0-9a-f]{32})\.json$")


def new_token() -> str:
    """Twilio auth tokens are 32 lowercase hex characters."""
    return secrets.token_hex(16)


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def iso_date(when: dt.datetime | None = None) -> str:
    """The accounts v1 API's dates: ISO 8601 in UTC, to the second."""
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc2822_date(when: dt.datetime | None = None) -> str:
    """The 2010-04-01 API's dates: RFC 2822 in GMT."""
    return (when or dt.datetime.now(dt.UTC)).strftime("%a, %d %b %Y %H:%M:%S +0000")


@dataclass(frozen=True)
class Lifecycle:
    """How a message's status moves: (seconds after creation, status, error code) steps, in order."""

    steps: tuple[tuple[float, str, int | None], ...]

    @classmethod
    def delivered(cls, step_s: float = 0.02) -> Lifecycle:
        return cls(((0.0, "queued", None), (step_s, "sending", None), (2 * step_s, "sent", None),
                    (3 * step_s, "delivered", None)))

    @classmethod
    def ending(cls, status: str, error_code: int | None, step_s: float = 0.02) -> Lifecycle:
        """queued, sending, sent, then `status` with `error_code` (undelivered 30003, failed 30008, sent 30007)."""
        return cls(((0.0, "queued", None), (step_s, "sending", None), (2 * step_s, "sent", None),
                    (3 * step_s, status, error_code)))

    @classmethod
    def stuck(cls, status: str = "queued") -> Lifecycle:
        return cls(((0.0, "queued", None), (0.0, status, None)))

    def at(self, elapsed: float) -> tuple[str, int | None]:
        reached = [(status, code) for after, status, code in self.steps if after <= elapsed]
        return reached[-1] if reached else (self.steps[0][1], self.steps[0][2])


def _error(status: int, code: int, message: str) -> Reply:
    return Reply(status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                          "status": status})


@dataclass
class TwilioStandIn:
    account_sid: str = field(default_factory=lambda: new_sid("AC"))
    primary: str = field(default_factory=new_token, repr=False)  # no secret in a test report
    friendly_name: str = "CRM Communication Engine (staging)"
    secondary: str | None = field(default=None, repr=False)
    secondary_created: dt.datetime | None = None
    keep_old_tokens_valid: bool = False
    auth_outage_for_retired: bool = False  # a retired token gets 503/20500 (no verdict) instead of 401/20003
    lifecycle: Lifecycle = field(default_factory=Lifecycle.delivered)
    retired: list[str] = field(default_factory=list, repr=False)
    messages: list[dict[str, object]] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list, repr=False)
    faults: Faults = field(default_factory=Faults)
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- admin -------------------------------------------------------------------------------------------------
    def valid_tokens(self) -> set[str]:
        with self.lock:
            zombies = set(self.retired) if self.keep_old_tokens_valid else set()
            return {self.primary} | ({self.secondary} if self.secondary else set()) | zombies

    def plant_secondary(self, created: dt.datetime) -> str:
        """A secondary token someone else created at `created` (a half-done rotation of theirs)."""
        with self.lock:
            self.secondary, self.secondary_created = new_token(), created
            return self.secondary

    def delivered_to(self, number: str) -> list[dict[str, object]]:
        with self.lock:
            now = [self._current(m) for m in self.messages if m["to"] == number]
        return [m for m in now if m["status"] == "delivered"]

    # --- HTTP --------------------------------------------------------------------------------------------------
    def route(self, request: Request) -> Reply:
        reply = self._route(request)
        with self.lock:
            self.requests.append((request.method, request.path, reply.status))
            self.exchanges.append(Exchange(request.method, request.path, dict(request.query), dict(request.form),
                                           request.headers.get("content-type", ""), reply.status, reply.body))
        return reply

    def _route(self, request: Request) -> Reply:
        if not self._authenticated(request):
            if self.auth_outage_for_retired and self._presents_retired(request):
                return _error(503, 20500, "Service Unavailable")  # a temporary failure, no verdict on the token
            return Reply(401, dict(AUTHENTICATE), {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        key = (request.method, request.path)
        if key == ("POST", "/v1/AuthTokens/Secondary"):
            return self._create_secondary()
        if key == ("DELETE", "/v1/AuthTokens/Secondary"):
            return self._delete_secondary()
        if key == ("POST", "/v1/AuthTokens/Promote"):
            return self._promote()
        if request.method == "GET" and (m := ACCOUNT.match(request.path)):
            return self._account(m["sid"])
        if request.method == "POST" and (m := MESSAGES.match(request.path)):
            return self._message(m["sid"], request)
        if request.method == "GET" and (m := MESSAGES.match(request.path)):
            return self._message_list(m["sid"], request)
        if request.method == "GET" and (m := MESSAGE.match(request.path)):
            return self._message_status(m["msg"])
        return _error(404, 20404, f"The requested resource {request.path} was not found")

    def _presents_retired(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        try:
            password = base64.b64decode(header[6:], validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
        with self.lock:
            return password in self.retired

    def _authenticated(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.account_sid) and any(
            secrets.compare_digest(password, t) for t in self.valid_tokens())

    def _create_secondary(self) -> Reply:
        """A new secondary token; while one exists, that one, unchanged (Twilio keeps one secondary token)."""
        with self.lock:
            if self.secondary is None:
                self.secondary, self.secondary_created = new_token(), dt.datetime.now(dt.UTC)
            token, created = self.secondary, self.secondary_created
        return Reply(201, {"account_sid": self.account_sid, "date_created": iso_date(created),
                           "date_updated": iso_date(created), "secondary_auth_token": token,
                           "url": "https://accounts.twilio.com/v1/AuthTokens/Secondary"})

    def _delete_secondary(self) -> Reply:
        with self.lock:
            if self.secondary is None:
                return _error(404, 20404, "The requested resource /AuthTokens/Secondary was not found")
            self.retired.append(self.secondary)
            self.secondary, self.secondary_created = None, None
        return Reply(204)

    def _promote(self) -> Reply:
        with self.lock:
            if self.secondary is None:  # Twilio's IAM API reference: 404 with code 20404
                return _error(404, 20404, "The requested resource /AuthTokens/Promote was not found")
            self.retired.append(self.primary)
            created = self.secondary_created
            self.primary, self.secondary, self.secondary_created = self.secondary, None, None
            token = self.primary
        return Reply(200, {"account_sid": self.account_sid, "auth_token": token, "date_created": iso_date(created),
                           "date_updated": iso_date(), "url": "https://accounts.twilio.com/v1/AuthTokens/Promote"})

    def _account(self, sid: str) -> Reply:
        if sid != self.account_sid:
            return _error(404, 20404, f"The requested resource /2010-04-01/Accounts/{sid}.json was not found")
        return Reply(200, {"sid": sid, "friendly_name": self.friendly_name, "status": "active", "type": "Full",
                           "owner_account_sid": sid, "date_created": rfc2822_date(), "date_updated": rfc2822_date(),
                           "uri": f"/2010-04-01/Accounts/{sid}.json"})

    def _message(self, sid: str, request: Request) -> Reply:
        to, from_, body = (request.form.get(k, "") for k in ("To", "From", "Body"))
        if not to or not (from_ or request.form.get("MessagingServiceSid")):
            return _error(400, 21604 if not to else 21603, "A 'To' and a 'From' phone number are required")
        msg_sid, now = new_sid("SM"), rfc2822_date()
        message: dict[str, object] = {
            "sid": msg_sid, "account_sid": sid, "api_version": "2010-04-01", "status": "queued", "to": to,
            "from": from_, "body": body, "date_created": now, "date_updated": now, "date_sent": None,
            "direction": "outbound-api", "num_segments": "1", "num_media": "0", "error_code": None,
            "error_message": None, "messaging_service_sid": None, "price": None, "price_unit": "USD",
            "uri": f"/2010-04-01/Accounts/{sid}/Messages/{msg_sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{sid}/Messages/{msg_sid}/Media.json"}}
        with self.lock:  # its lifecycle from here on, as later fetches report it
            self.messages.append({**message, "_created": time.monotonic(), "_lifecycle": self.lifecycle})
        return Reply(201, message)

    def _message_list(self, sid: str, request: Request) -> Reply:
        """Twilio's message list (api_v2010 ListMessageResponse): newest first, filtered by To and From, one page."""
        size = int(request.query.get("PageSize") or 50)
        with self.lock:
            chosen = [m for m in reversed(self.messages) if m["account_sid"] == sid
                      and request.query.get("To", m["to"]) == m["to"]
                      and request.query.get("From", m["from"]) == m["from"]][:size]
        uri = f"/2010-04-01/Accounts/{sid}/Messages.json?PageSize={size}&Page=0"
        return Reply(200, {"messages": [self._current(m) for m in chosen], "end": max(0, len(chosen) - 1),
                           "first_page_uri": uri, "next_page_uri": None, "page": 0, "page_size": size,
                           "previous_page_uri": None, "start": 0, "uri": uri})

    def _message_status(self, msg_sid: str) -> Reply:
        with self.lock:
            found = [m for m in self.messages if m["sid"] == msg_sid]
        if not found:
            return _error(404, 20404, f"The requested resource Messages/{msg_sid}.json was not found")
        return Reply(200, self._current(found[-1]))

    @staticmethod
    def _current(message: dict[str, object]) -> dict[str, object]:
        """The message as a fetch now shows it: its lifecycle's status and error code for the time since creation."""
        lifecycle, created = message["_lifecycle"], message["_created"]
        assert isinstance(lifecycle, Lifecycle) and isinstance(created, float)
        status, code = lifecycle.at(time.monotonic() - created)
        shown = {k: v for k, v in message.items() if not k.startswith("_")}
        sent = status not in ("queued", "sending", "accepted", "scheduled")
        return shown | {"status": status, "error_code": code, "date_updated": rfc2822_date(),
                        "date_sent": shown["date_created"] if sent else None}


def _unavailable(fault: Fault) -> Reply:
    """An injected refusal: 429 is Twilio's rate limit (error 20429 "Too Many Requests", with Retry-After:
    twilio.com/docs/errors/20429), anything else an outage (error 20500, twilio.com/docs/errors/20500)."""
    status = fault.fail or 503
    if status == 429:
        return _error(429, fault.code or 20429, "Too Many Requests")
    if fault.code == 20003:  # e.g. the 403 a Service gets for about a minute after a promotion (shared notes)
        return _error(status, 20003, "Authenticate")
    return _error(status, fault.code or 20500, "Service Unavailable" if status == 503 else "Internal Server Error")


@contextlib.contextmanager
def twilio_standin(standin: TwilioStandIn | None = None) -> Iterator[TwilioStandIn]:
    """Start the stand-in on a free loopback port; `.base_url` says where."""
    standin = standin or TwilioStandIn()
    with serve(standin.route, standin.faults, _unavailable) as base_url:
        standin.base_url = base_url
        yield standin
