"""A Twilio REST stand-in: the endpoints the rotation uses, with Twilio's auth rules and error bodies.

    POST   /v1/AuthTokens/Secondary                  201 {account_sid, secondary_auth_token, date_created, url, ...}
    DELETE /v1/AuthTokens/Secondary                  204
    POST   /v1/AuthTokens/Promote                    200 {account_sid, auth_token, date_created, date_updated, url}
    GET    /2010-04-01/Accounts/{Sid}.json           200 {sid, friendly_name, status, type, owner_account_sid, uri}
    POST   /2010-04-01/Accounts/{Sid}/Messages.json  201 {sid, status, to, from, body, ...}

HTTP Basic (account SID, auth token) is checked on every call; the primary and the secondary token both authenticate.
Promotion makes the secondary the primary and the old primary answers 401/20003 from then on. The optional
`suppress_email_notification` (form field on POST, query on DELETE) is accepted and ignored.

Admin (Python): `TwilioStandIn.primary`, `.secondary`, `.messages`, `.requests`, `.faults`, `.keep_old_tokens_valid`
(a negative control: promotion no longer kills the old primary), `.add_valid_token()`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from staging.http_standin import Faults, Reply, Request, serve

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


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def _error(status: int, code: int, message: str) -> Reply:
    return Reply(status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                          "status": status})


@dataclass
class TwilioStandIn:
    account_sid: str = field(default_factory=lambda: new_sid("AC"))
    primary: str = field(default_factory=new_token, repr=False)  # no secret in a test report
    friendly_name: str = "CRM Communication Engine (staging)"
    secondary: str | None = field(default=None, repr=False)
    keep_old_tokens_valid: bool = False
    drop_messages: bool = False  # a negative control: accepted (201 queued) but never delivered
    retired: list[str] = field(default_factory=list, repr=False)
    messages: list[dict[str, object]] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- admin -------------------------------------------------------------------------------------------------
    def valid_tokens(self) -> set[str]:
        with self.lock:
            zombies = set(self.retired) if self.keep_old_tokens_valid else set()
            return {self.primary} | ({self.secondary} if self.secondary else set()) | zombies

    def delivered_to(self, number: str) -> list[dict[str, object]]:
        with self.lock:
            return [m for m in self.messages if m["to"] == number and m["status"] == "delivered"]

    # --- HTTP --------------------------------------------------------------------------------------------------
    def route(self, request: Request) -> Reply:
        reply = self._route(request)
        with self.lock:
            self.requests.append((request.method, request.path, reply.status))
        return reply

    def _route(self, request: Request) -> Reply:
        if not self._authenticated(request):
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
        if request.method == "GET" and (m := MESSAGE.match(request.path)):
            return self._message_status(m["msg"])
        return _error(404, 20404, f"The requested resource {request.path} was not found")

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
        with self.lock:
            self.secondary = new_token()
            token = self.secondary
        return Reply(201, {"account_sid": self.account_sid, "date_created": _now(), "date_updated": _now(),
                           "secondary_auth_token": token, "url": f"{self.base_url}/v1/AuthTokens/Secondary"})

    def _delete_secondary(self) -> Reply:
        with self.lock:
            if self.secondary is None:
                return _error(404, 20404, "The requested resource /AuthTokens/Secondary was not found")
            self.retired.append(self.secondary)
            self.secondary = None
        return Reply(204)

    def _promote(self) -> Reply:
        with self.lock:
            if self.secondary is None:
                return _error(400, 20001, "A secondary Auth Token must exist before it can be promoted")
            self.retired.append(self.primary)
            self.primary, self.secondary = self.secondary, None
            token = self.primary
        return Reply(200, {"account_sid": self.account_sid, "auth_token": token, "date_created": _now(),
                           "date_updated": _now(), "url": f"{self.base_url}/v1/AuthTokens/Promote"})

    def _account(self, sid: str) -> Reply:
        if sid != self.account_sid:
            return _error(404, 20404, f"The requested resource /2010-04-01/Accounts/{sid}.json was not found")
        return Reply(200, {"sid": sid, "friendly_name": self.friendly_name, "status": "active", "type": "Full",
                           "owner_account_sid": sid, "date_created": _now(), "date_updated": _now(),
                           "uri": f"/2010-04-01/Accounts/{sid}.json"})

    def _message(self, sid: str, request: Request) -> Reply:
        to, from_, body = (request.form.get(k, "") for k in ("To", "From", "Body"))
        if not to or not (from_ or request.form.get("MessagingServiceSid")):
            return _error(400, 21604 if not to else 21603, "A 'To' and a 'From' phone number are required")
        msg_sid = new_sid("SM")
        message = {"sid": msg_sid, "account_sid": sid, "status": "queued", "to": to, "from": from_,
                   "body": body, "date_created": _now(), "direction": "outbound-api", "num_segments": "1",
                   "error_code": None, "uri": f"/2010-04-01/Accounts/{sid}/Messages/{msg_sid}.json"}
        with self.lock:  # the carrier's verdict, as a later status fetch reports it
            outcome = {"status": "undelivered", "error_code": 30005} if self.drop_messages else {"status": "delivered"}
            self.messages.append({**message, **outcome})
        return Reply(201, message)

    def _message_status(self, msg_sid: str) -> Reply:
        with self.lock:
            found = [m for m in self.messages if m["sid"] == msg_sid]
        if not found:
            return _error(404, 20404, f"The requested resource Messages/{msg_sid}.json was not found")
        return Reply(200, found[-1])


def _unavailable(status: int) -> Reply:
    return _error(status, 20500, "Service Unavailable" if status == 503 else "Internal Server Error")


@contextlib.contextmanager
def twilio_standin(standin: TwilioStandIn | None = None) -> Iterator[TwilioStandIn]:
    """Start the stand-in on a free loopback port; `.base_url` says where."""
    standin = standin or TwilioStandIn()
    with serve(standin.route, standin.faults, _unavailable) as base_url:
        standin.base_url = base_url
        yield standin
