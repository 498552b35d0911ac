"""Fixtures for what a scenario acts on: the deployment configuration, and the deployment itself (a staging world of
stand-ins, or the live systems behind the live guard)."""

from __future__ import annotations

import contextlib
import getpass
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rotation.core.app_control import AppCommands
from rotation.core.config import Config, ConfigError, Credential, app_with_overrides, load_config
from rotation.core.database import UNREACHABLE_FIX, libpq_said
from rotation.core.deployment import Deployment, Target
from rotation.evidence.leaks import run_secrets
from staging.pg_binaries import server_description
from staging.postgres import NoPostgresError, StagingServer, staging_server
from staging.provider_standins import ProviderStandIns, provider_standins
from staging.world import staging_world

CONFIG = pytest.StashKey[Config]()
STAGING_SERVER = pytest.StashKey[str]()  # which PostgreSQL the staging run used, for the run's metadata


def default_operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def config_of(config: pytest.Config) -> Config:
    """The deployment configuration, loaded once per session (an error in it stops the run before anything)."""
    if CONFIG not in config.stash:
        try:
            config.stash[CONFIG] = load_config(config.getoption("config"))
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[CONFIG]


def target_of(config: pytest.Config) -> Target:
    return "live" if config.getoption("target") == "live" else "staging"


def operator_of(config: pytest.Config) -> str:
    return str(config.getoption("operator") or default_operator())


@pytest.fixture(scope="session")
def rotation_config(pytestconfig: pytest.Config) -> Config:
    return config_of(pytestconfig)


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> Target:
    return target_of(pytestconfig)


@pytest.fixture(scope="session")
def operator(pytestconfig: pytest.Config) -> str:
    return operator_of(pytestconfig)


@pytest.fixture(scope="session")
def pg_server(pytestconfig: pytest.Config, target: Target) -> Iterator[StagingServer | None]:
    """Staging: one PostgreSQL server for the session (a DSN given, Docker, or a private cluster). Live: none."""
    if target == "live":
        yield None
        return
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(staging_server(pytestconfig.getoption("dsn")))
        except NoPostgresError as exc:  # one paragraph naming the ways out, not a traceback per scenario
            pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
        try:
            pytestconfig.stash[STAGING_SERVER] = server_description(server.admin_dsn, server.backend)
        except psycopg.OperationalError as exc:  # a --dsn that does not answer: one paragraph, not one per scenario
            pytest.exit(f"the staging database does not answer ({libpq_said(exc)}): {UNREACHABLE_FIX}. Nothing was "
                        "run.", returncode=pytest.ExitCode.USAGE_ERROR)
        yield server


def uses_providers(item: pytest.Item, config: Config) -> bool:
    return any(item.get_closest_marker(c.type) for c in config.credentials if c.provider != "database")


@pytest.fixture
def standins(request: pytest.FixtureRequest, target: Target, rotation_config: Config,
             tmp_path: Path) -> Iterator[ProviderStandIns | None]:
    """Staging scenarios tagged with a provider credential: the Twilio, Graph and SMTP stand-ins. An emergency
    scenario: the incident's stand-ins, shared by the whole emergency procedure (as its deployment is). Otherwise
    none."""
    if request.node.get_closest_marker("emergency"):
        yield request.getfixturevalue("incident_standins")
        return
    if target == "live" or not uses_providers(request.node, rotation_config):
        yield None
        return
    with provider_standins(tmp_path / "providers") as started:
        yield started


@pytest.fixture
def deployment(request: pytest.FixtureRequest, target: Target) -> Iterator[Deployment]:
    """What the scenario acts on. Live: the configured systems. An emergency scenario: the one incident's
    deployment, shared by the whole emergency procedure. Otherwise, staging: a fresh CRM database, .env and running
    app stand-in for this scenario."""
    if target == "live":
        yield live_deployment(request.config)
    elif request.node.get_closest_marker("emergency"):
        yield request.getfixturevalue("incident_deployment")
    else:
        yield from scenario_world(request)


def scenario_world(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    pg_server: StagingServer = request.getfixturevalue("pg_server")
    standins: ProviderStandIns | None = request.getfixturevalue("standins")
    tmp_path: Path = request.getfixturevalue("tmp_path")
    with staging_world(pg_server.admin_dsn, tmp_path / "app", config_of(request.config),
                       rows=request.config.getoption("rows"), operator=operator_of(request.config),
                       server_log=pg_server.server_log, extra_env=standins.env() if standins else None) as staged:
        register = request.getfixturevalue("evidence").register_secret
        for secret in run_secrets(dsns=[staged.dsn], env_files=[staged.env_file],
                                  names=[c.env for c in config_of(request.config).credentials]):
            register(secret)  # every secret of the world's .env is known to the scan, not only the rotated one
        yield staged


def live_app(config: pytest.Config, rotation_config: Config) -> AppCommands:
    """The configuration's [app], with any --app-* option given on the command line taking precedence."""
    return app_with_overrides(rotation_config, {field: config.getoption(option) for field, option in (
        ("start", "app_start"), ("stop", "app_stop"), ("restart", "app_restart"), ("reload", "app_reload"),
        ("health_url", "health_url"), ("health_timeout_s", "health_timeout"))})


def live_deployment(config: pytest.Config) -> Deployment:
    dsn, env_file = config.getoption("dsn"), config.getoption("env_file")
    if not dsn or not env_file:
        raise pytest.UsageError("--target live needs --dsn (or ROTATION_DSN) and --env-file naming the live systems")
    rotation_config = config_of(config)
    return Deployment("live", dsn, Path(env_file), live_app(config, rotation_config), rotation_config,
                      operator_of(config))


@pytest.fixture
def scenario_credential(request: pytest.FixtureRequest, rotation_config: Config) -> Credential | None:
    """The credential a scenario rotates, from its credential tag (the registry's type, e.g. @twilio_token)."""
    return next((c for c in rotation_config.credentials if request.node.get_closest_marker(c.type)), None)
