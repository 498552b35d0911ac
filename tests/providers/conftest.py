"""Fixtures for the provider adapter tests: each stand-in on a free loopback port, and an adapter pointed at it
with a fast retry policy (the same shape as live, in milliseconds)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rotation.cli.provider import KILL_AFTER_ENV
from rotation.core import envfile
from rotation.core.secret import Secret, secret
from rotation.providers import procedure as rotation
from rotation.providers.base import FAST, Provider, RetryPolicy
from rotation.providers.factory import STAGING_POLICY, provider_for
from rotation.providers.smtp import SmtpProvider, SmtpSettings
from rotation.providers.twilio import TwilioProvider, TwilioSettings
from rotation.providers.whatsapp import GraphSettings, WhatsAppProvider
from staging.graph_standin import GraphStandIn, graph_standin
from staging.postgres import StagingServer
from staging.provider_standins import ProviderStandIns, provider_standins
from staging.smtp_standin import SmtpStandIn, StandInConsole, smtp_standin
from staging.twilio_standin import TwilioStandIn, twilio_standin
from staging.world import World, staging_world
from tests.harness import PROJECT

ADMIN_NUMBER = "+15550100001"
FROM_NUMBER = "+15550100002"
ADMIN_EMAIL = "admin@eventplanning.example.com"


@pytest.fixture
def twilio_api() -> Iterator[TwilioStandIn]:
    with twilio_standin() as standin:
        yield standin


@pytest.fixture
def twilio(twilio_api: TwilioStandIn) -> TwilioProvider:
    return TwilioProvider(TwilioSettings(twilio_api.account_sid, FROM_NUMBER, ADMIN_NUMBER, twilio_api.base_url, FAST))


@pytest.fixture
def graph_api() -> Iterator[GraphStandIn]:
    with graph_standin() as standin:
        yield standin


@pytest.fixture
def whatsapp(graph_api: GraphStandIn) -> WhatsAppProvider:
    return WhatsAppProvider(GraphSettings(graph_api.phone_number_id, graph_api.app_id, graph_api.app_secret,
                                          graph_api.system_user_id, ADMIN_NUMBER, graph_api.base_url,
                                          graph_api.version, FAST))


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpStandIn]:
    with smtp_standin(tmp_path / "smtp-tls") as standin:
        yield standin


@pytest.fixture
def smtp_settings(smtp_server: SmtpStandIn) -> SmtpSettings:
    return SmtpSettings("127.0.0.1", smtp_server.port, smtp_server.username, smtp_server.username, ADMIN_EMAIL,
                        str(smtp_server.ca_file), FAST)


@pytest.fixture
def smtp(smtp_server: SmtpStandIn, smtp_settings: SmtpSettings) -> SmtpProvider:
    return SmtpProvider(smtp_settings, StandInConsole(smtp_server.console_url))


@dataclass(frozen=True)
class ProviderWorld:
    """A staging CRM world (scratch database, .env, running app stand-in) wired to the three provider stand-ins."""

    world: World
    standins: ProviderStandIns
    originals: dict[str, Secret]  # the credential each provider started with

    def provider(self, name: str, policy: RetryPolicy = STAGING_POLICY) -> Provider:
        return provider_for(name, envfile.read_env(self.world.env_file), policy=policy,
                            smtp_console=self.standins.smtp_console)

    def context(self) -> rotation.Context:
        return rotation.Context(self.world.env_file, self.world.dsn, self.world.app, "crash-test")

    def cli(self, action: str, name: str, *extra: str,
            kill_after: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(PROJECT)}
        env.pop(KILL_AFTER_ENV, None)
        if kill_after:
            env[KILL_AFTER_ENV] = kill_after
        app = self.world.app
        return subprocess.run(
            [sys.executable, "-m", "rotation", "provider", action, name, "--env-file", str(self.world.env_file),
             "--app-reload", app.reload or "", "--app-restart", app.restart, "--health-url", app.health_url,
             "--smtp-console", self.standins.smtp.console_url, "--operator", "crash-test",
             "--retry-attempts", "4", "--retry-delay", "0.05", "--timeout", "2", *extra],
            cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def provider_world(pg: StagingServer, tmp_path: Path) -> Iterator[ProviderWorld]:
    with provider_standins(tmp_path / "providers") as standins, \
            staging_world(pg.admin_dsn, tmp_path / "app", rows=20, extra_env=standins.env()) as world:
        originals = {"twilio": secret(standins.twilio.primary), "whatsapp": standins.whatsapp_token,
                     "smtp": standins.smtp_password}
        yield ProviderWorld(world, standins, originals)
