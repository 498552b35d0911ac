"""What the HTTP provider stand-ins share: a threaded loopback server, JSON/form helpers and injectable faults.

A stand-in is a real HTTP server on 127.0.0.1 (a free port), so the real clients (twilio SDK, requests) talk to it
over a socket exactly as they would to the provider. Tests break it through its `Faults`:

    faults.fail_next(3)              # the next 3 matching requests answer 503
    faults.fail_forever()            # every matching request answers 503 until cleared
    faults.hang_next(1, seconds=2)   # the next request is answered only after 2 s (past the client timeout)
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
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


@dataclass
class Faults:
    """Faults injected into the next requests whose path contains `match` (every request when match is '')."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    _fail: int = 0
    _fail_status: int = 503
    _hang: int = 0
    _hang_seconds: float = 0.0
    _match: str = ""
    injected: int = 0

    def fail_next(self, n: int, status: int = 503, match: str = "") -> None:
        with self.lock:
            self._fail, self._fail_status, self._match = n, status, match

    def fail_forever(self, status: int = 503, match: str = "") -> None:
        self.fail_next(10**9, status, match)

    def hang_next(self, n: int, seconds: float, match: str = "") -> None:
        with self.lock:
            self._hang, self._hang_seconds, self._match = n, seconds, match

    def clear(self) -> None:
        with self.lock:
            self._fail = self._hang = 0
            self._match = ""

    def take(self, path: str) -> tuple[int | None, float]:
        """(status to fail with or None, seconds to stall first) for this request, consuming one fault."""
        with self.lock:
            if self._match and self._match not in path:
                return None, 0.0
            if self._hang > 0:
                self._hang -= 1
                self.injected += 1
                return None, self._hang_seconds
            if self._fail > 0:
                self._fail -= 1
                self.injected += 1
                return self._fail_status, 0.0
            return None, 0.0


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


def make_handler(route: Route, faults: Faults, unavailable: Callable[[int], Reply]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            request = parse_request(self)
            fail, stall = faults.take(request.path)
            if stall:
                time.sleep(stall)
            reply = unavailable(fail) if fail else route(request)
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

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up on a stalled answer (a timeout fault) is expected: stay quiet about it."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(route: Route, faults: Faults, unavailable: Callable[[int], Reply]) -> Iterator[str]:
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
