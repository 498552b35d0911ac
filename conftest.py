"""The suite's root: command-line options and the plugins that hold fixtures, evidence and step definitions."""

from __future__ import annotations

import getpass
import os

import pytest

pytest_plugins = [
    "rotation_pytest.evidence",
    "rotation_pytest.fixtures",
    "steps.common",
    "steps.db_key",
    "steps.monitoring",
    "steps.hygiene",
    "steps.troubleshooting",
    "steps.providers",
    "rotation_pytest.emergency",
    "steps.emergency",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rotation", "credential rotation runbook")
    group.addoption("--target", choices=("staging", "live"), default="staging",
                    help="where the procedures run: 'staging' (throwaway PostgreSQL and local stand-ins, the default) "
                         "or 'live' (real DSN, real .env, real provider APIs; needs --confirm-live)")
    group.addoption("--dsn", default=os.environ.get("ROTATION_DSN"),
                    help="PostgreSQL DSN (or ROTATION_DSN). Staging: a server on which the suite creates and drops its "
                         "own scratch database. Live: the CRM database itself")
    group.addoption("--env-file", default=None,
                    help="the app's .env file. Staging default: a generated one in a temp dir")
    group.addoption("--operator", default=None,
                    help="who performs the rotation, written to rotated_by and the evidence (default: the OS user)")
    group.addoption("--rows", type=int, default=2000,
                    help="staging only: how many synthetic clients to seed (default 2,000)")
    app = parser.getgroup("rotation-app", "the application under rotation (live; staging drives its stand-in)")
    app.addoption("--app-start", default="systemctl start event-planning-api", help="command that starts the app")
    app.addoption("--app-stop", default="systemctl stop event-planning-api", help="command that stops the app")
    app.addoption("--app-restart", default="systemctl restart event-planning-api", help="command that restarts the app")
    app.addoption("--app-reload", default="systemctl reload event-planning-api",
                  help="command that reloads the app's configuration without downtime")
    app.addoption("--health-url", default="http://localhost:8000/health", help="the app's health endpoint")
    app.addoption("--health-timeout", type=float, default=60.0,
                  help="seconds to wait for the app to become healthy (or stop) before a step fails (live; default 60)")


def default_operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"
