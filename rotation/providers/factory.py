"""Build a provider adapter from the app's .env settings and the credential registry: the same code for staging
(stand-in endpoints in .env) and live (the providers' default endpoints)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rotation.core import envfile
from rotation.core.config import Credential
from rotation.core.deployment import Deployment
from rotation.providers.app_records import AppDeliveryRecords
from rotation.providers.base import DeliveryWait, DeliveryWitness, Provider, RetryPolicy, registered
from rotation.providers.procedure import ProviderRotation
from rotation.providers.revocation import Wait
from rotation.providers.smtp import OperatorConsole, PasswordConsole, SmtpProvider, SmtpSettings
from rotation.providers.twilio import TwilioProvider, TwilioSettings
from rotation.providers.whatsapp import GraphSettings, WhatsAppProvider

Builder = Callable[[Mapping[str, str], RetryPolicy | None, PasswordConsole | None, Credential, DeliveryWait | None],
                   Provider]

BUILDERS: Mapping[str, Builder] = {
    "twilio": lambda env, policy, _, credential, wait: TwilioProvider(TwilioSettings.from_env(env, policy, wait),
                                                                      credential),
    "whatsapp": lambda env, policy, _, credential, __: WhatsAppProvider(GraphSettings.from_env(env, policy),
                                                                        credential),
    "smtp": lambda env, policy, console, credential, _: SmtpProvider(SmtpSettings.from_env(env, policy),
                                                                     console or OperatorConsole(), credential),
}
NAMES = tuple(BUILDERS)
# Providers that report delivery only to the app (Meta's webhook): their delivery can be proven from the app's records
APP_REPORTED = ("whatsapp",)


def provider_for(name: str, env: Mapping[str, str], *, policy: RetryPolicy | None = None,
                 smtp_console: PasswordConsole | None = None, credential: Credential | None = None,
                 delivery_wait: DeliveryWait | None = None) -> Provider:
    """The adapter for provider `name` ("twilio", "whatsapp", "smtp"), rotating `credential` (default: the built-in
    registry's credential of that provider)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown provider {name!r}; expected one of {', '.join(NAMES)}")
    return BUILDERS[name](env, policy, smtp_console, credential or registered(name), delivery_wait)


@dataclass(frozen=True)
class ProviderOptions:
    """How a deployment's provider rotations run, besides .env and the registry: the retry policy, where a new SMTP
    password comes from (None: the operator's console), who else can tell what became of a test message (staging:
    the stand-ins' mailbox), the reason logged, whether to abandon a pending rotation or replace a pending credential
    this rotation did not create, how long to wait for a test message's final word, and whether to prove WhatsApp
    delivery from the app's own records, and how long to ask the provider whether a revocation took effect."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    smtp_console: PasswordConsole | None = None
    witnesses: Mapping[str, DeliveryWitness] = field(default_factory=dict)
    reason: str | None = None  # None: "Scheduled <interval>-day rotation"
    abandon_pending: bool = False
    replace_secondary: bool = False
    delivery_wait: DeliveryWait = field(default_factory=DeliveryWait)
    prove_from_app: bool = False
    revoke_wait: Wait = field(default_factory=Wait)  # how long a revocation may take to be refused (--revoke-wait)

    def provider(self, credential: Credential, env: Mapping[str, str]) -> Provider:
        return provider_for(credential.provider, env, policy=self.policy, smtp_console=self.smtp_console,
                            credential=credential, delivery_wait=self.delivery_wait)

    def witness(self, credential: Credential, deployment: Deployment) -> DeliveryWitness | None:
        if self.prove_from_app and credential.provider in APP_REPORTED:
            return AppDeliveryRecords(deployment.dsn, self.delivery_wait)
        return self.witnesses.get(credential.provider)


def rotation_for(deployment: Deployment, credential: Credential | None, options: ProviderOptions) -> ProviderRotation:
    """The rotation of `credential` (a provider's, from the registry) on this deployment."""
    if credential is None or credential.provider not in BUILDERS:
        what = credential.type if credential else "this scenario's credential (it has no credential tag)"
        raise ValueError(f"no provider adapter rotates {what}")
    provider = options.provider(credential, envfile.read_env(deployment.env_file))
    return ProviderRotation(deployment, credential, provider, reason=options.reason,
                            abandon_pending=options.abandon_pending, witness=options.witness(credential, deployment),
                            replace_secondary=options.replace_secondary, revoke_wait=options.revoke_wait)
