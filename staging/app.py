"""The app stand-in: a small real process that plays `event-planning-api` in staging, faithful to what the production
app does (shared notes crm-schema.md, "What the production app does"):

- it reads .env once, at start (python-dotenv): a restart is what makes it use a new value. SIGHUP (what a
  `reload` sends) changes nothing, as for the app;
- `/health` and `/healthz` answer the app's system-health JSON: `overall_status` (`healthy` or `warning` -> 200,
  otherwise 503) and its checks, and nothing that says which key or token it loaded; `/health/live` answers
  `{"status": "alive"}`, `/health/ready` `{"status": "ready"|"not_ready", "overall_status": ...}`. The database
  check connects and reads, as a health check does; each configured provider is called with the credential the app
  loaded (Twilio account fetch, Graph phone-number GET, SMTP STARTTLS + AUTH);
- it connects as the app's ordinary role (DATABASE_URL) and decrypts PII with decrypt_sensitive_data. The real app
  binds DB_ENCRYPTION_KEY as a statement parameter; the stand-in sends it through a session key table instead
  (rotation.core.database), so that the staging server's log, which the suite searches for keys, stays clean;
- staging only: GET /staging/clients/{id}/email makes it read one client's encrypted e-mail address with the key
  it loaded (the probe a live deployment configures against its own endpoint, see rotation.toml); GET
  /staging/loaded gives the fingerprints of what it loaded, for the project's tests (no procedure uses it).

    python -m staging.app serve|start|stop|reload|restart --env-file F --port P --pidfile F [--log F]
"""

from __future__ import annotations

import argparse
import datetime as dt
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
from urllib.parse import unquote

import psycopg
import requests
from dotenv import dotenv_values

from rotation.core.database import connect, key_ref
from rotation.core.secret import Secret
from rotation.providers.base import Provider, ProviderError, RetryPolicy

Check = Callable[[dict[str, str]], dict[str, object]]
MIN_KEY_LENGTH = 32  # the app refuses a DB_ENCRYPTION_KEY shorter than this
PROBE_PREFIX, PROBE_SUFFIX = "/staging/clients/", "/email"
LOADED_PATH = "/staging/loaded"  # tests only: what the process loaded at start, by fingerprint


def check_database(env: dict[str, str]) -> dict[str, object]:
    """The database is reachable as the app's role and the CRM's tables answer (no key is involved). One row, as a
    health check reads: it used to count every client, which at 1,000,000 rows, right after a rotation rewrote them
    all and while autovacuum cleaned up, took 0.35-0.6 s, so the stand-in looked down when the app would not."""
    if len(env.get("DB_ENCRYPTION_KEY", "")) < MIN_KEY_LENGTH:
        return {"ok": False, "status": "unhealthy",
                "error": f"DB_ENCRYPTION_KEY missing or shorter than {MIN_KEY_LENGTH} characters"}
    started = time.monotonic()
    try:
        with psycopg.connect(env["DATABASE_URL"], connect_timeout=3, application_name="event-planning-api") as conn:
            conn.execute("SELECT 1 FROM crm_client_preferences LIMIT 1").fetchone()
    except psycopg.Error as exc:
        return {"ok": False, "status": "unhealthy", "error": type(exc).__name__}
    return {"ok": True, "status": "healthy", "response_time_ms": round(1000 * (time.monotonic() - started), 1)}


def read_email(env: dict[str, str], client_id: str) -> tuple[int, dict[str, object]]:
    """One client's e-mail address, decrypted by the app's decrypt_sensitive_data with the key the app loaded."""
    try:
        with connect(env["DATABASE_URL"], application_name="event-planning-api",
                     keys={"app": Secret(env.get("DB_ENCRYPTION_KEY", ""))}) as conn:
            row = conn.execute("SELECT decrypt_sensitive_data(email_encrypted, " + key_ref("app") + ") "
                               "FROM crm_client_preferences WHERE client_id = %s", (client_id,)).fetchone()
    except psycopg.Error as exc:
        return 500, {"error": f"could not read the client: {type(exc).__name__}"}
    if row is None:
        return 404, {"error": "no such client"}
    return 200, {"client_id": client_id, "email": row[0]}


HEALTH_POLICY = RetryPolicy(attempts=2, first_delay_s=0.05, max_delay_s=0.05, timeout_s=2.0)


def check_provider(provider: Provider, credential: Secret) -> dict[str, object]:
    """The provider's read-only call with the credential the app loaded (Twilio account fetch, Graph phone-number
    GET, SMTP STARTTLS + AUTH). The answer says whether it worked, never which credential was used."""
    try:
        result = provider.check(credential)
    except (ProviderError, KeyError, ValueError) as exc:
        return {"ok": False, "status": "unhealthy", "error": type(exc).__name__}
    return {"ok": result.accepted, "status": "healthy" if result.accepted else "unhealthy",
            "provider_status": result.status, "code": result.code}
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
        # Read once, at start, as the app does: nothing reads .env again while the process lives.
        self.env: dict[str, str] = {k: v or "" for k, v in dotenv_values(env_file).items()}

    def health(self) -> tuple[int, dict[str, object]]:
        enabled = {name: check for name, (var, check) in CHECKS.items() if self.env.get(var)}
        with ThreadPoolExecutor(max_workers=max(1, len(enabled))) as pool:  # provider calls in parallel
            futures = {name: pool.submit(check, dict(self.env)) for name, check in enabled.items()}
            checks = {name: future.result() for name, future in futures.items()}
        overall = "healthy" if checks and all(c["ok"] for c in checks.values()) else "unhealthy"
        return (200 if overall in ("healthy", "warning") else 503), {
            "overall_status": overall, "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "checks": checks}

    def loaded(self) -> dict[str, object]:
        """Staging only: the fingerprint of every value the app loaded, for the project's own tests. No procedure
        uses it (a live app has nothing like it): they prove the app's key with rotation.core.app_proof."""
        return {name: Secret(value).fingerprint for name, value in self.env.items() if value}

    def answer(self, path: str) -> tuple[int, dict[str, object]]:
        if path in ("/health", "/healthz"):
            return self.health()
        if path == "/health/live":
            return 200, {"status": "alive"}
        if path == "/health/ready":
            status, body = self.health()
            return status, {"status": "ready" if status == 200 else "not_ready",
                            "overall_status": body["overall_status"]}
        if path == LOADED_PATH:
            return 200, self.loaded()
        if path.startswith(PROBE_PREFIX) and path.endswith(PROBE_SUFFIX):
            return read_email(self.env, unquote(path[len(PROBE_PREFIX):-len(PROBE_SUFFIX)]))
        return 404, {"error": "not found"}


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
            self._send(*app.answer(self.path))

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
            self._send(*handle(self.path, body, self.headers.get("X-Hub-Signature-256", ""), dict(app.env)))

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: request lines would only clutter the stand-in's log

    return Handler


def serve(env_file: Path, port: int, pidfile: Path) -> None:
    app = App(env_file)
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(app))
    signal.signal(signal.SIGHUP, lambda *_: None)  # a reload does not re-read .env: only a restart does
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


def loaded_fingerprints(health_url: str) -> dict[str, str]:
    """Tests only: the fingerprints of the .env values the running stand-in loaded (GET /staging/loaded)."""
    answer = requests.get(health_url.rsplit("/health", 1)[0] + LOADED_PATH, timeout=5).json()
    return {str(k): str(v) for k, v in answer.items()}


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
