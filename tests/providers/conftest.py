"""Fixtures for the provider adapter tests: each stand-in on a free loopback port, and an adapter pointed at it
with a fast retry policy (the same shape as live, in milliseconds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotation.providers.base import FAST
from rotation.providers.smtp import SmtpProvider, SmtpSettings
from rotation.providers.twilio import TwilioProvider, TwilioSettings
from rotation.providers.whatsapp import GraphSettings, WhatsAppProvider
from staging.graph_standin import GraphStandIn, graph_standin
from staging.smtp_standin import SmtpStandIn, StandInConsole, smtp_standin
from staging.twilio_standin import TwilioStandIn, twilio_standin

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
