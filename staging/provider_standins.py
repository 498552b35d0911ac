"""The three provider stand-ins together, as a staging world uses them: started on free loopback ports, each with
a first credential issued, and the .env settings that point the app (and the rotation) at them.

Staging-only pieces of the provider rotations live here too: the fast retry policy and delivery wait, the SMTP
stand-in's mailbox as a delivery witness, the wiring of Meta's webhook to the app stand-in (so that the app's own
records prove WhatsApp delivery, as they can live), and the trouble the "API calls fail" scenario needs (a token
rotated behind the app's back)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rotation.core import envfile
from rotation.core.deployment import Deployment
from rotation.core.keys import generate_key
from rotation.core.proof import Evidence
from rotation.providers.base import Delivery, DeliveryReport, DeliveryWait, DeliveryWitness, Provider, RetryPolicy
from rotation.providers.revocation import Wait
from staging.app_webhook import PATH as WEBHOOK_PATH
from staging.graph_standin import GraphStandIn, graph_standin
from staging.smtp_standin import FAST_FAILED_AUTH_DELAY_S, SmtpStandIn, StandInConsole, smtp_standin
from staging.twilio_standin import TwilioStandIn, twilio_standin
from staging.world import STAGING_STAKEHOLDERS

ADMIN_PHONE_NUMBER = "+15550100001"
TWILIO_PHONE_NUMBER = "+15550100002"
ADMIN_EMAIL = "admin@eventplanning.example.com"
SMTP_FROM_EMAIL = "notifications@eventplanning.example.com"
# The local domain's mailboxes at the relay: anything else there is 550 5.1.1 (the admin, the emergency's stakeholders)
MAILBOXES = frozenset({ADMIN_EMAIL, SMTP_FROM_EMAIL, STAGING_STAKEHOLDERS.sender, *STAGING_STAKEHOLDERS.all()})

STAGING_POLICY = RetryPolicy(attempts=4, first_delay_s=0.05, max_delay_s=0.2, timeout_s=2.0)
"""The live retry policy's shape, at stand-in speed."""
FAST = RetryPolicy(attempts=4, first_delay_s=0.01, max_delay_s=0.05, timeout_s=0.5)
"""For the adapter tests: the same shape, in milliseconds."""


STAGING_REVOKE_WAIT = Wait(timeout_s=2.0, interval_s=0.2)
"""The live revoke wait's shape at stand-in speed: the stand-in's console revokes at once."""
STAGING_DELIVERY_WAIT = DeliveryWait(timeout_s=5.0, interval_s=0.05)
"""The live wait's shape at stand-in speed: the stand-ins' messages reach a final status within a tenth of a second."""


@dataclass(frozen=True)
class Mailbox:
    """The SMTP stand-in's mailbox: staging can see the test e-mail arrive, which no live relay shows."""

    smtp: SmtpStandIn
    source: str = "the SMTP stand-in's mailbox for the admin address (staging only)"

    def report(self, delivery: Delivery) -> DeliveryReport:
        wanted = delivery.message_id.encode()
        arrived = any(isinstance(data := m.get("data"), bytes) and wanted in data
                      for m in self.smtp.delivered_to(delivery.recipient))
        where = f"the stand-in's mailbox for {delivery.recipient}"
        if arrived:
            return DeliveryReport("delivered", "in the mailbox", None, f"{where} holds {delivery.message_id}",
                                  self.source, accepted_by="the relay (250)")
        return DeliveryReport("failed", "not in the mailbox", None, f"{where} has nothing for {delivery.message_id}",
                              self.source, accepted_by="the relay (250)")


@dataclass(frozen=True)
class ProviderStandIns:
    twilio: TwilioStandIn
    graph: GraphStandIn
    smtp: SmtpStandIn
    meta_token: str      # the first system-user token Meta issued
    relay_password: str  # the first password of the mail relay's account

    @property
    def smtp_console(self) -> StandInConsole:
        return StandInConsole(self.smtp.console_url)

    def witnesses(self) -> Mapping[str, DeliveryWitness]:
        """Who besides the provider's API sees a test message arrive, by provider name (staging only: Twilio's
        status and the app's WhatsApp records prove delivery the same way live)."""
        return {"smtp": Mailbox(self.smtp)}

    def connect_webhook(self, deployment: Deployment) -> None:
        """Meta's webhook to the app stand-in's, as the app's dashboard configures it live."""
        base = deployment.app.health_url.rsplit("/", 1)[0]
        self.graph.webhook_url = base + WEBHOOK_PATH

    def env(self) -> dict[str, str]:
        """The app's provider settings, as the runbook's .env names them, plus the staging endpoints."""
        return {
            "TWILIO_ACCOUNT_SID": self.twilio.account_sid,
            "TWILIO_AUTH_TOKEN": self.twilio.primary,
            "TWILIO_PHONE_NUMBER": TWILIO_PHONE_NUMBER,
            "TWILIO_API_BASE": self.twilio.base_url,
            "WHATSAPP_ACCESS_TOKEN": self.meta_token,
            "WHATSAPP_PHONE_NUMBER_ID": self.graph.phone_number_id,
            "WHATSAPP_APP_ID": self.graph.app_id,
            "WHATSAPP_APP_SECRET": self.graph.app_secret,
            "WHATSAPP_SYSTEM_USER_ID": self.graph.system_user_id,
            "GRAPH_API_BASE": self.graph.base_url,
            "GRAPH_API_VERSION": self.graph.version,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp.port),
            "SMTP_USERNAME": self.smtp.username,
            "SMTP_PASSWORD": self.relay_password,
            "SMTP_USE_TLS": "true",
            "SMTP_USE_SSL": "false",
            "SMTP_FROM_EMAIL": SMTP_FROM_EMAIL,
            "SMTP_FROM_NAME": "Event Planning CRM",
            "SMTP_CA_FILE": str(self.smtp.ca_file),
            "ADMIN_PHONE_NUMBER": ADMIN_PHONE_NUMBER,
            "ADMIN_EMAIL": ADMIN_EMAIL,
        }

    def secrets(self) -> list[str]:
        """Every credential the stand-ins know, for the evidence secret scan."""
        tokens = [self.twilio.primary, *(t for t in [self.twilio.secondary] if t), *self.twilio.retired]
        return [*tokens, *self.graph.tokens, self.graph.app_secret, *self.smtp.passwords, self.relay_password]


@contextlib.contextmanager
def provider_standins(directory: Path) -> Iterator[ProviderStandIns]:
    relay = SmtpStandIn(failed_auth_delay_s=FAST_FAILED_AUTH_DELAY_S, mailboxes=MAILBOXES)
    with twilio_standin() as twilio, graph_standin() as graph, smtp_standin(directory / "smtp-tls", relay) as smtp:
        password = generate_key().reveal()
        smtp.add_password(password)
        yield ProviderStandIns(twilio, graph, smtp, graph.mint(), password)


def rotate_behind_the_apps_back(deployment: Deployment, provider: Provider, evidence: Evidence) -> None:
    """The trouble of "API calls failing after token rotation": the token was rotated at the provider and in .env,
    and the old one retired, but nobody reloaded the app, which still calls the provider with the old token."""
    old = envfile.get_secret(deployment.env_file, provider.env_name)
    new = provider.issue(old)
    evidence.register_secret(new)
    provider.retire_old(old, new)
    envfile.set_value(deployment.env_file, provider.env_name, new)
    evidence.record("token rotated without reloading the application", {"old": old.fingerprint,
                                                                        "new": new.fingerprint},
                    source=f"{provider.source('issue')}; {provider.source('retire')}; {deployment.env_file.name} "
                           "updated; no reload (staging)")

