"""Build a provider adapter from the app's .env settings: the same code for staging (stand-in endpoints in .env)
and live (the providers' default endpoints)."""

from __future__ import annotations

from collections.abc import Mapping

from rotation.providers.base import Provider, RetryPolicy
from rotation.providers.smtp import OperatorConsole, PasswordConsole, SmtpProvider, SmtpSettings
from rotation.providers.twilio import TwilioProvider, TwilioSettings
from rotation.providers.whatsapp import GraphSettings, WhatsAppProvider

NAMES = ("twilio", "whatsapp", "smtp")
CREDENTIAL_TYPES = {"twilio": "twilio_token", "whatsapp": "whatsapp_token", "smtp": "smtp_password"}
STAGING_POLICY = RetryPolicy(attempts=4, first_delay_s=0.05, max_delay_s=0.2, timeout_s=2.0)


def provider_for(name: str, env: Mapping[str, str], *, policy: RetryPolicy | None = None,
                 smtp_console: PasswordConsole | None = None) -> Provider:
    if name == "twilio":
        return TwilioProvider(TwilioSettings.from_env(env, policy))
    if name == "whatsapp":
        return WhatsAppProvider(GraphSettings.from_env(env, policy))
    if name == "smtp":
        return SmtpProvider(SmtpSettings.from_env(env, policy), smtp_console or OperatorConsole())
    raise ValueError(f"unknown provider {name!r}; expected one of {', '.join(NAMES)}")
