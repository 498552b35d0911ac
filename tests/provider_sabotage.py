"""Negative controls for the Twilio, WhatsApp and SMTP rotations (merged into tests/sabotage.py's SABOTAGES).

Each breaks, through the real stand-ins, app process or database, exactly what one step of the scenario checks:
the provider refuses the credential it just issued, .env is left world-readable, the provider keeps the old
credential valid, the test message is accepted but never delivered (Twilio: undelivered 30003; Meta: the app's
webhook records it failed; SMTP: 250, but the mailbox stays empty), the test message is refused where the live check
sees it (Twilio: sent with 30007; Meta: held for quality assessment; the relay: 554), the app is not really reloaded
and keeps the old credential, the rotation log row disappears. Each acts only in its own provider's scenario, so
one run can break each of the three scenarios differently. The step a sabotage follows is named by the feature's
own text.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rotation.core.config import default_config
from rotation.providers.procedure import ProviderRotation
from staging.graph_standin import UNDELIVERABLE
from staging.provider_standins import ProviderStandIns
from staging.twilio_standin import Lifecycle

Action = Callable[[pytest.FixtureRequest], None]
PROVIDERS = tuple(c.provider for c in default_config().credentials if c.provider != "database")


def label(provider: str) -> str:
    return default_config().credential(provider).label


CREATE_STEPS = {"twilio": "a new {label} is created as the secondary auth token",
                "whatsapp": "a new {label} is generated for the system user",
                "smtp": "a new {label} is generated at the email provider"}
RETIRE_STEPS = {"twilio": "the new {label} is promoted to primary",
                "whatsapp": "the old {label} is revoked",
                "smtp": "the old {label} is revoked at the email provider"}
ENV_STEP = "the configuration is updated with the new {label}"
LOG_STEP = "the {label} rotation is logged"
RELOAD_STEP = "the application is reloaded"


def _standins(request: pytest.FixtureRequest) -> ProviderStandIns:
    standins: ProviderStandIns | None = request.getfixturevalue("standins")
    if standins is None:
        raise pytest.UsageError("provider sabotage needs the staging stand-ins")
    return standins


def _rotation(request: pytest.FixtureRequest) -> ProviderRotation:
    rotation: ProviderRotation = request.getfixturevalue("provider_rotation")
    return rotation


def keep_old_valid(request: pytest.FixtureRequest) -> None:
    """The provider's promotion / revocation does not take: the old credential still authenticates."""
    s, rotation = _standins(request), _rotation(request)
    actions: dict[str, Callable[[], None]] = {
        "twilio": lambda: setattr(s.twilio, "keep_old_tokens_valid", True),
        "whatsapp": lambda: setattr(s.graph, "keep_revoked_tokens_valid", True),
        "smtp": lambda: s.smtp.add_password(rotation.old),  # the console said "revoked"; the relay disagrees
    }
    actions[rotation.provider.name]()


def drop_messages(request: pytest.FixtureRequest) -> None:
    """The provider accepts the test message, but it never arrives."""
    s = _standins(request)
    actions: dict[str, Callable[[], None]] = {
        "twilio": lambda: setattr(s.twilio, "lifecycle", Lifecycle.ending("undelivered", 30003)),
        "whatsapp": lambda: setattr(s.graph, "outcome", UNDELIVERABLE),
        "smtp": lambda: setattr(s.smtp, "drop_messages", True),
    }
    actions[_rotation(request).provider.name]()


def refuse_messages(request: pytest.FixtureRequest) -> None:
    """The provider's own answer says no, where a live run sees it without any witness."""
    s = _standins(request)
    actions: dict[str, Callable[[], None]] = {
        "twilio": lambda: setattr(s.twilio, "lifecycle", Lifecycle.ending("sent", 30007)),
        "whatsapp": lambda: setattr(s.graph, "message_status", "held_for_quality_assessment"),
        "smtp": lambda: setattr(s.smtp, "refuse_messages", True),
    }
    actions[_rotation(request).provider.name]()


def refuse_new(request: pytest.FixtureRequest) -> None:
    """The provider no longer accepts the credential it just issued (deleted, revoked, never activated)."""
    s, rotation = _standins(request), _rotation(request)
    actions: dict[str, Callable[[], None]] = {
        "twilio": lambda: setattr(s.twilio, "secondary", None),
        "whatsapp": lambda: s.graph.revoked.add(rotation.new.reveal()),
        "smtp": lambda: s.smtp.remove_password(rotation.new),
    }
    actions[rotation.provider.name]()


def only_in(provider: str, action: Action) -> Action:
    """Act only in this provider's scenario, so that several provider sabotages can share one run."""
    def guarded(request: pytest.FixtureRequest) -> None:
        if _rotation(request).provider.name == provider:
            action(request)
    return guarded


def provider_sabotages(app_keeps_old: Action, delete_log: Action,
                       env_readable: Action) -> dict[str, tuple[str, Action]]:
    table: dict[str, tuple[str, Action]] = {}
    for p in PROVIDERS:
        named = label(p)
        table[f"{p}:new-credential-refused"] = (CREATE_STEPS[p].format(label=named), only_in(p, refuse_new))
        table[f"{p}:env-0644"] = (ENV_STEP.format(label=named), only_in(p, env_readable))
        table[f"{p}:old-credential-kept-valid"] = (RETIRE_STEPS[p].format(label=named), only_in(p, keep_old_valid))
        table[f"{p}:test-message-not-delivered"] = (RELOAD_STEP, only_in(p, drop_messages))
        table[f"{p}:test-message-refused"] = (RELOAD_STEP, only_in(p, refuse_messages))
        table[f"{p}:app-not-reloaded"] = (RELOAD_STEP, only_in(p, app_keeps_old))
        table[f"{p}:rotation-log-missing"] = (LOG_STEP.format(label=named), only_in(p, delete_log))
    return table
