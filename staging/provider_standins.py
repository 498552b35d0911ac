"""The three provider stand-ins together, as a staging world uses them: started on free loopback ports, each with
a first credential issued, and the .env settings that point the app (and the rotation) at them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rotation.core.keys import generate_key
from staging.graph_standin import GraphStandIn, graph_standin
from staging.smtp_standin import SmtpStandIn, StandInConsole, smtp_standin
from staging.twilio_standin import TwilioStandIn, twilio_standin

ADMIN_PHONE_NUMBER = "+15550100001"
TWILIO_PHONE_NUMBER = "+15550100002"
ADMIN_EMAIL = "admin@eventplanning.example.com"


@dataclass(frozen=True)
class ProviderStandIns:
    twilio: TwilioStandIn
    graph: GraphStandIn
    smtp: SmtpStandIn
    whatsapp_token: str
    smtp_password: str

    @property
    def smtp_console(self) -> StandInConsole:
        return StandInConsole(self.smtp.console_url)

    def env(self) -> dict[str, str]:
        """The app's provider settings, as the runbook's .env names them, plus the staging endpoints."""
        return {
            "TWILIO_ACCOUNT_SID": self.twilio.account_sid,
            "TWILIO_AUTH_TOKEN": self.twilio.primary,
            "TWILIO_PHONE_NUMBER": TWILIO_PHONE_NUMBER,
            "TWILIO_API_BASE": self.twilio.base_url,
            "WHATSAPP_ACCESS_TOKEN": self.whatsapp_token,
            "WHATSAPP_PHONE_NUMBER_ID": self.graph.phone_number_id,
            "WHATSAPP_APP_ID": self.graph.app_id,
            "WHATSAPP_APP_SECRET": self.graph.app_secret,
            "WHATSAPP_SYSTEM_USER_ID": self.graph.system_user_id,
            "GRAPH_API_BASE": self.graph.base_url,
            "GRAPH_API_VERSION": self.graph.version,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp.port),
            "SMTP_USERNAME": self.smtp.username,
            "SMTP_PASSWORD": self.smtp_password,
            "SMTP_CA_FILE": str(self.smtp.ca_file),
            "ADMIN_PHONE_NUMBER": ADMIN_PHONE_NUMBER,
            "ADMIN_EMAIL": ADMIN_EMAIL,
        }

    def secrets(self) -> list[str]:
        """Every credential the stand-ins know, for the evidence secret scan."""
        tokens = [self.twilio.primary, *(t for t in [self.twilio.secondary] if t), *self.twilio.retired]
        return [*tokens, *self.graph.tokens, self.graph.app_secret, *self.smtp.passwords, self.smtp_password]


@contextlib.contextmanager
def provider_standins(directory: Path) -> Iterator[ProviderStandIns]:
    with twilio_standin() as twilio, graph_standin() as graph, smtp_standin(directory / "smtp-tls") as smtp:
        password = generate_key().reveal()
        smtp.add_password(password)
        yield ProviderStandIns(twilio, graph, smtp, graph.mint(), password)
