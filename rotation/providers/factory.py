"""Build a provider adapter from the app's .env settings and the credential registry: the same code for staging
(stand-in endpoints in .env) and live (the providers' default endpoints)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rotation.core import envfile
from rotation.core.config import Credential
from rotation.core.deployment import Deployment
from rotation.providers.base import DeliveryWitness, Provider, RetryPolicy, registered
from rotation.providers.procedure import ProviderRotation
from rotation.providers.smtp import OperatorConsole, PasswordConsole, SmtpProvider, SmtpSettings
from rotation.providers.twilio import TwilioProvider, TwilioSettings
from rotation.providers.whatsapp import GraphSettings, WhatsAppProvider

Builder = Callable[[Mapping[str, str], RetryPolicy | None, PasswordConsole | None, Credential], Provider]

BUILDERS: Mapping[str, Builder] = {
    "twilio": lambda env, policy, _, credential: TwilioProvider(TwilioSettings.from_env(env, policy), credential),
    "whatsapp": lambda env, policy, _, credential: WhatsAppProvider(GraphSettings.from_env(env, policy), credential),
    "smtp": lambda env, policy, console, credential: SmtpProvider(SmtpSettings.from_env(env, policy),
                                                                  console or OperatorConsole(), credential),
}
NAMES = tuple(BUILDERS)


def provider_for(name: str, env: Mapping[str, str], *, policy: RetryPolicy | None = None,
                 smtp_console: PasswordConsole | None = None, credential: Credential | None = None) -> Provider:
    """The adapter for provider `name` ("twilio", "whatsapp", "smtp"), rotating `credential` (default: the built-in
    registry's credential of that provider)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown provider {name!r}; expected one of {', '.join(NAMES)}")
    return BUILDERS[name](env, policy, smtp_console, credential or registered(name))


@dataclass(frozen=True)
class ProviderOptions:
    """How a deployment's provider rotations run, besides .env and the registry: the retry policy, where a new SMTP
    password comes from (None: the operator's console), who can witness a test message arriving (staging: the
    stand-ins' handset and mailbox; live: nobody yet), the reason logged and whether to abandon a pending rotation."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    smtp_console: PasswordConsole | None = None
    witnesses: Mapping[str, DeliveryWitness] = field(default_factory=dict)
    reason: str | None = None  # None: "Scheduled <interval>-day rotation"
    abandon_pending: bool = False

    def provider(self, credential: Credential, env: Mapping[str, str]) -> Provider:
        return provider_for(credential.provider, env, policy=self.policy, smtp_console=self.smtp_console,
                            credential=credential)

    def witness(self, credential: Credential) -> DeliveryWitness | None:
        return self.witnesses.get(credential.provider)


def rotation_for(deployment: Deployment, credential: Credential | None, options: ProviderOptions) -> ProviderRotation:
    """The rotation of `credential` (a provider's, from the registry) on this deployment."""
    if credential is None or credential.provider not in BUILDERS:
        what = credential.type if credential else "this scenario's credential (it has no credential tag)"
        raise ValueError(f"no provider adapter rotates {what}")
    provider = options.provider(credential, envfile.read_env(deployment.env_file))
    return ProviderRotation(deployment, credential, provider, reason=options.reason,
                            abandon_pending=options.abandon_pending, witness=options.witness(credential))
