"""pytest fixtures for the world a scenario acts on: staging stand-ins, or the live systems behind guardrails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotation.core.app_control import AppCommands
from staging.postgres import StagingServer, staging_server
from staging.provider_standins import ProviderStandIns, provider_standins
from staging.world import World, staging_world


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("target"))


@pytest.fixture(scope="session")
def operator(pytestconfig: pytest.Config) -> str:
    from conftest import default_operator

    return pytestconfig.getoption("operator") or default_operator()


@pytest.fixture(scope="session")
def pg_server(pytestconfig: pytest.Config, target: str) -> Iterator[StagingServer | None]:
    """Staging: one PostgreSQL server for the session (a DSN given, Docker, or a private cluster). Live: none."""
    if target == "live":
        yield None
        return
    with staging_server(pytestconfig.getoption("dsn")) as server:
        yield server


PROVIDER_CREDENTIALS = ("twilio_token", "whatsapp_token", "smtp_password")


@pytest.fixture
def standins(request: pytest.FixtureRequest, target: str, tmp_path: Path) -> Iterator[ProviderStandIns | None]:
    """Staging scenarios tagged with a provider credential: the Twilio, Graph and SMTP stand-ins. Otherwise none."""
    if target == "live" or not any(request.node.get_closest_marker(m) for m in PROVIDER_CREDENTIALS):
        yield None
        return
    with provider_standins(tmp_path / "providers") as started:
        yield started


@pytest.fixture
def provider_env(standins: ProviderStandIns | None) -> dict[str, str]:
    """Extra .env settings a staging world needs for provider stand-ins."""
    return standins.env() if standins else {}


@pytest.fixture
def world(pytestconfig: pytest.Config, target: str, pg_server: StagingServer | None, tmp_path: Path,
          provider_env: dict[str, str]) -> Iterator[World]:
    """Staging: a fresh CRM database, .env and running app stand-in for this scenario. Live: the configured systems."""
    if target == "live":
        yield live_world(pytestconfig)
        return
    assert pg_server is not None
    with staging_world(pg_server.admin_dsn, tmp_path / "app", rows=pytestconfig.getoption("rows"),
                       server_log=pg_server.server_log, extra_env=provider_env) as staged:
        yield staged


def live_world(config: pytest.Config) -> World:
    dsn, env_file = config.getoption("dsn"), config.getoption("env_file")
    if not dsn or not env_file:
        raise pytest.UsageError("--target live needs --dsn (or ROTATION_DSN) and --env-file naming the live systems")
    commands = AppCommands(start=config.getoption("app_start"), stop=config.getoption("app_stop"),
                           restart=config.getoption("app_restart"), reload=config.getoption("app_reload"),
                           health_url=config.getoption("health_url"),
                           health_timeout_s=config.getoption("health_timeout"))
    return World("live", dsn, Path(env_file), commands)
