"""The application under rotation: stop, start, reload and restart by configured commands; health over HTTP.

Staging drives the app stand-in; live runs what the operator configures (e.g. `systemctl stop event-planning-api`).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass

import requests


class AppControlError(RuntimeError):
    pass


@dataclass(frozen=True)
class AppCommands:
    start: str
    stop: str
    restart: str
    reload: str | None
    health_url: str
    health_timeout_s: float = 60.0  # how long a step waits for the app to come up (or go down) before failing


@dataclass(frozen=True)
class Health:
    status_code: int | None
    body: dict[str, object]

    @property
    def healthy(self) -> bool:
        return self.status_code == 200


def run(command: str, *, timeout_s: float = 120) -> None:
    """Run a configured command without a shell; fail with its exit code and the tail of its stderr."""
    done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode:
        raise AppControlError(f"`{command}` exited {done.returncode}: {done.stderr.strip()[-300:]}")


def health(url: str, *, timeout_s: float = 5) -> Health:
    """GET the health URL; a refused connection is an unhealthy app, not an exception."""
    try:
        response = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        return Health(None, {"error": type(exc).__name__})
    try:
        body = response.json()
    except ValueError:
        body = {"text": response.text[:200]}
    return Health(response.status_code, body if isinstance(body, dict) else {"body": body})


def wait_for_health(url: str, *, healthy: bool = True, timeout_s: float = 30, interval_s: float = 0.2) -> Health:
    """Poll until the app reports the wanted state or the time is up; returns the last answer either way."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = health(url)
        if result.healthy == healthy or time.monotonic() >= deadline:
            return result
        time.sleep(interval_s)


def reload_or_restart(commands: AppCommands) -> str:
    """The runbook's `systemctl reload` (graceful, no downtime), or restart where reload is not supported."""
    if commands.reload:
        try:
            run(commands.reload)
            return "reload"
        except AppControlError:
            pass
    run(commands.restart)
    return "restart"
