"""The app stand-in: a small real process that plays `event-planning-api` in staging.

It loads .env like the app, serves GET /health (200 only when every configured check passes; the database check
decrypts sample rows with its DB_ENCRYPTION_KEY; each configured provider is called with the credential the app
loaded: Twilio account fetch, Graph phone-number GET, SMTP STARTTLS + AUTH), re-reads .env on SIGHUP, and stops on
SIGTERM.

    python -m staging.app serve|start|stop|reload|restart --env-file F --port P --pidfile F [--log F]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import requests
from dotenv import dotenv_values

from rotation.core.secret import Secret, fingerprint
from rotation.providers.base import Provider, ProviderError, RetryPolicy

Check = Callable[[dict[str, str]], dict[str, object]]

SAMPLE = """
SELECT count(decrypt_sensitive_data(email_encrypted, %(k)s))
       + count(decrypt_sensitive_data(phone_number_encrypted, %(k)s))
       + count(decrypt_sensitive_data(full_name_encrypted, %(k)s))
FROM (SELECT * FROM crm_client_preferences ORDER BY random() LIMIT 5) s
"""


def check_database(env: dict[str, str]) -> dict[str, object]:
    """Decrypt a random sample of client rows with the loaded key, as the app does on every read."""
    key = env.get("DB_ENCRYPTION_KEY", "")
    if len(key) < 32:
        return {"ok": False, "error": "DB_ENCRYPTION_KEY missing or shorter than 32 characters"}
    try:
        with psycopg.connect(env["DATABASE_URL"], connect_timeout=3) as conn:
            conn.execute("SET log_parameter_max_length = 0")
            values = conn.execute(SAMPLE, {"k": key}).fetchone()[0]
    except psycopg.Error as exc:
        return {"ok": False, "error": type(exc).__name__ + ": " + str(exc).splitlines()[0][:120]}
    return {"ok": True, "values_decrypted": values, "key_fingerprint": fingerprint(key), "key_length": len(key)}


HEALTH_POLICY = RetryPolicy(attempts=2, first_delay_s=0.05, max_delay_s=0.05, timeout_s=2.0)


def check_provider(provider: Provider, credential: Secret) -> dict[str, object]:
    """The provider's read-only call with the credential the app loaded (Twilio account fetch, Graph phone-number
    GET, SMTP STARTTLS + AUTH)."""
    try:
        result = provider.check(credential)
    except (ProviderError, KeyError, ValueError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "credential_fingerprint": credential.fingerprint}
    return {"ok": result.accepted, "status": result.status, "code": result.code, "detail": result.detail,
            "credential_fingerprint": result.credential_fp}


def check_twilio(env: dict[str, str]) -> dict[str, object]:
    from rotation.providers.twilio import TwilioProvider, TwilioSettings  # lazy: start/stop/reload stay quick

    return check_provider(TwilioProvider(TwilioSettings.from_env(env, HEALTH_POLICY)), Secret(env["TWILIO_AUTH_TOKEN"]))


def check_whatsapp(env: dict[str, str]) -> dict[str, object]:
    from rotation.providers.whatsapp import GraphSettings, WhatsAppProvider

    provider = WhatsAppProvider(GraphSettings.from_env(env, HEALTH_POLICY))
    return check_provider(provider, Secret(env["WHATSAPP_ACCESS_TOKEN"]))


def check_smtp(env: dict[str, str]) -> dict[str, object]:
    from rotation.providers.smtp import OperatorConsole, SmtpProvider, SmtpSettings

    provider = SmtpProvider(SmtpSettings.from_env(env, HEALTH_POLICY), OperatorConsole(environ={}))
    return check_provider(provider, Secret(env["SMTP_PASSWORD"]))


CHECKS: dict[str, tuple[str, Check]] = {
    # name: (the .env variable whose presence enables the check, the check)
    "database": ("DATABASE_URL", check_database),
    "twilio": ("TWILIO_AUTH_TOKEN", check_twilio),
    "whatsapp": ("WHATSAPP_ACCESS_TOKEN", check_whatsapp),
    "smtp": ("SMTP_PASSWORD", check_smtp),
}


class App:
    def __init__(self, env_file: Path) -> None:
        self.env_file = env_file
        self.lock = threading.Lock()
        self.env: dict[str, str] = {}
        self.loaded_at = 0.0
        self.reload()

    def reload(self) -> None:
        env = {k: v or "" for k, v in dotenv_values(self.env_file).items()}
        with self.lock:
            self.env, self.loaded_at = env, time.time()

    def health(self) -> tuple[int, dict[str, object]]:
        with self.lock:
            env = dict(self.env)
        enabled = {name: check for name, (var, check) in CHECKS.items() if env.get(var)}
        with ThreadPoolExecutor(max_workers=max(1, len(enabled))) as pool:  # provider calls in parallel
            futures = {name: pool.submit(check, env) for name, check in enabled.items()}
            checks = {name: future.result() for name, future in futures.items()}
        ok = bool(checks) and all(c["ok"] for c in checks.values())
        return (200 if ok else 503), {"status": "healthy" if ok else "unhealthy", "checks": checks,
                                      "env_loaded_at": self.loaded_at, "pid": os.getpid()}


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
            if self.path != "/health":
                self._send(404, {"error": "not found"})
                return
            self._send(*app.health())

        def _send(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802  (the WhatsApp webhook: staging/app_webhook.py)
            from staging.app_webhook import handle

            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with app.lock:
                env = dict(app.env)
            self._send(*handle(self.path, body, self.headers.get("X-Hub-Signature-256", ""), env))

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: request lines would only clutter the stand-in's log

    return Handler


def serve(env_file: Path, port: int, pidfile: Path) -> None:
    app = App(env_file)
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(app))
    signal.signal(signal.SIGHUP, lambda *_: app.reload())
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    pidfile.write_text(str(os.getpid()))
    try:
        server.serve_forever()
    finally:
        pidfile.unlink(missing_ok=True)


def running_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start(args: argparse.Namespace) -> int:
    if running_pid(args.pidfile):
        return 0
    log = open(args.log or os.devnull, "ab")  # noqa: SIM115  (handed to the child)
    subprocess.Popen([sys.executable, "-m", "staging.app", "serve", "--env-file", str(args.env_file),
                      "--port", str(args.port), "--pidfile", str(args.pidfile)],
                     stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                     cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{args.port}/health", timeout=2)
            return 0
        except requests.ConnectionError:
            time.sleep(0.05)
    print(f"app stand-in did not start listening on port {args.port}", file=sys.stderr)
    return 1


def stop(args: argparse.Namespace) -> int:
    pid = running_pid(args.pidfile)
    if pid is None:
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while running_pid(args.pidfile) and time.monotonic() < deadline:
        time.sleep(0.05)
    if running_pid(args.pidfile):
        os.kill(pid, signal.SIGKILL)
        args.pidfile.unlink(missing_ok=True)
    return 0


def reload(args: argparse.Namespace) -> int:
    pid = running_pid(args.pidfile)
    if pid is None:
        print("app stand-in is not running: nothing to reload", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.1)  # the handler runs between requests; give it a moment, as systemctl reload would
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m staging.app")
    parser.add_argument("action", choices=("serve", "start", "stop", "reload", "restart"))
    parser.add_argument("--env-file", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pidfile", type=Path, required=True)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    if args.action == "serve":
        serve(args.env_file, args.port, args.pidfile)
        return 0
    if args.action == "restart":
        stop(args)
        return start(args)
    return {"start": start, "stop": stop, "reload": reload}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
