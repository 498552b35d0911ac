"""What the HTTP provider stand-ins share: a threaded loopback server, JSON/form helpers and injectable faults.

A stand-in is a real HTTP server on 127.0.0.1 (a free port), so the real clients (twilio SDK, requests) talk to it
over a socket exactly as they would to the provider. Tests break it through its `Faults`:

    faults.fail_next(3)              # the next 3 matching requests answer 503
    faults.fail_forever()            # every matching request answers 503 until cleared
    faults.hang_next(1, seconds=2)   # the next request stalls 2 s before it is handled (past the client timeout);
                                     # a request whose client gave up meanwhile is dropped, as a 503 would be
    faults.lose_answer_next(1, seconds=2)  # the next request is handled, but its answer comes 2 s late (lost)
    faults.drop_answer_next(1)       # the next request is handled (the server acts), then the connection is closed
                                     # without any answer: what a client sees when a proxy or the network drops it
    faults.throttle_next(1, retry_after="2")  # the next request answers 429 with `Retry-After: 2` (the provider's
                                     # own rate-limit body; seconds or an HTTP date, RFC 9110 section 10.2.3)

The rate-limit bodies and the lost answers are the providers' documented behaviour: Twilio answers a rate limit with
429, error 20429 and Retry-After (twilio.com/docs/errors/20429, "Too Many Requests"); Meta with error codes 4, 17,
80007 or 130429 and `is_transient` (Meta's business-messaging-api_v23.0.yaml, response `TooManyRequests`); a request
that reached the server may have been acted on although its answer never came (RFC 9110 section 9.2.2: only
idempotent methods may be retried automatically after a lost connection).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    status: int
    body: dict[str, object] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    json: dict[str, object] | None
    headers: dict[str, str]

    def param(self, name: str) -> str:
        """A parameter from the query string or the form body (Graph accepts either)."""
        return self.query.get(name) or self.form.get(name) or ""


@dataclass(frozen=True)
class Exchange:
    """One request to a stand-in and its answer, as the contract tests (staging.contracts) validate them."""

    method: str
    path: str
    query: Mapping[str, str]
    form: Mapping[str, str]
    content_type: str
    status: int
    body: Mapping[str, object] | None
    json: Mapping[str, object] | None = None
    headers: Mapping[str, str] | None = None  # as sent, credentials masked (see `described_headers`)


def described_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers a description may constrain (User-Agent, Content-Type, the Authorization scheme), with the
    credential replaced: the contract tests see the scheme, never the token."""
    shown = {name.title(): value for name, value in headers.items()
             if name.lower() in ("user-agent", "content-type", "authorization")}
    if "Authorization" in shown:
        shown["Authorization"] = shown["Authorization"].split(" ", 1)[0] + " redacted"
    return shown


@dataclass(frozen=True)
class Fault:
    fail: int | None = None
    stall_before: float = 0.0
    stall_after: float = 0.0
    drop_after: bool = False  # handled, then the connection closed with no answer
    retry_after: str | None = None  # with fail: the Retry-After header of the refusal
    code: int | None = None  # with fail: the provider's error code, where the stand-in lets a test choose it


def client_gone(sock: socket.socket) -> bool:
    """True when the client closed its end (it timed out and gave up) while the request was stalled."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


@dataclass
class Faults:
    """Faults injected into the next requests whose path contains `match` (every request when match is '')."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    _fail: int = 0
    _fail_status: int = 503
    _hang: int = 0
    _hang_seconds: float = 0.0
    _late: int = 0
    _drop: int = 0
    _retry_after: str | None = None
    _code: int | None = None
    _match: str = ""
    injected: int = 0

    def fail_next(self, n: int, status: int = 503, match: str = "", code: int | None = None) -> None:
        """The next n requests are refused with `status` (and the provider's error `code`, where a test chooses)."""
        with self.lock:
            self._fail, self._fail_status, self._match = n, status, match
            self._retry_after, self._code = None, code

    def throttle_next(self, n: int, retry_after: str | None = "2", match: str = "", status: int = 429,
                      code: int | None = None) -> None:
        """The next n requests are refused as rate-limited (the provider's own body, `code` where it has several),
        with this Retry-After header (None: none)."""
        with self.lock:
            self._fail, self._fail_status, self._match = n, status, match
            self._retry_after, self._code = retry_after, code

    def drop_answer_next(self, n: int, match: str = "") -> None:
        with self.lock:
            self._drop, self._match = n, match

    def fail_forever(self, status: int = 503, match: str = "") -> None:
        self.fail_next(10**9, status, match)

    def hang_next(self, n: int, seconds: float, match: str = "") -> None:
        with self.lock:
            self._hang, self._hang_seconds, self._match = n, seconds, match

    def lose_answer_next(self, n: int, seconds: float, match: str = "") -> None:
        with self.lock:
            self._late, self._hang_seconds, self._match = n, seconds, match

    def clear(self) -> None:
        with self.lock:
            self._fail = self._hang = self._late = self._drop = 0
            self._match, self._retry_after, self._code = "", None, None

    def take(self, path: str) -> Fault:
        """What to do to this request, consuming one fault."""
        with self.lock:
            if self._match and self._match not in path:
                return Fault()
            for kind in ("_hang", "_late", "_drop", "_fail"):
                if getattr(self, kind) > 0:
                    setattr(self, kind, getattr(self, kind) - 1)
                    self.injected += 1
                    if kind == "_fail":
                        return Fault(fail=self._fail_status, retry_after=self._retry_after, code=self._code)
                    if kind == "_drop":
                        return Fault(drop_after=True)
                    return Fault(stall_before=self._hang_seconds) if kind == "_hang" else Fault(
                        stall_after=self._hang_seconds)
            return Fault()


Route = Callable[[Request], Reply]


def parse_request(handler: BaseHTTPRequestHandler) -> Request:
    parts = urlsplit(handler.path)
    length = int(handler.headers.get("Content-Length") or 0)
    raw = handler.rfile.read(length) if length else b""
    ctype = handler.headers.get("Content-Type", "")
    form: dict[str, str] = {}
    body_json: dict[str, object] | None = None
    if raw and "json" in ctype:
        body_json = json.loads(raw)
    elif raw:
        form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    headers = {k.lower(): v for k, v in handler.headers.items()}
    return Request(handler.command, parts.path, query, form, body_json, headers)


def make_handler(route: Route, faults: Faults, unavailable: Callable[[Fault], Reply]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            request = parse_request(self)
            fault = faults.take(request.path)
            if fault.stall_before:
                time.sleep(fault.stall_before)
                if client_gone(self.connection):
                    self.close_connection = True
                    return
            reply = unavailable(fault) if fault.fail else route(request)
            if fault.fail and fault.retry_after is not None:
                reply.headers["Retry-After"] = fault.retry_after
            if fault.drop_after:  # the server acted; the answer never leaves it
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.stall_after:
                time.sleep(fault.stall_after)
            data = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _handle  # noqa: N815  (http.server's naming)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # request lines carry query strings; the stand-ins keep their own request log instead

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        """A client that gave up on a stalled answer (a timeout fault) is expected: stay quiet about it."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(route: Route, faults: Faults, unavailable: Callable[[Fault], Reply]) -> Iterator[str]:
    """Serve `route` on 127.0.0.1 on a free port in a daemon thread; yield its base URL; shut down afterwards."""
    server = _Server(("127.0.0.1", 0), make_handler(route, faults, unavailable))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="standin-http",
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        faults.clear()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
