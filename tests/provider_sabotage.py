"""Negative controls for the Twilio, WhatsApp and SMTP rotations (merged into tests/sabotage.py's SABOTAGES).

Each breaks, through the real stand-ins, app process or database, exactly what one step of the scenario checks:
the provider refuses the credential it just issued, .env is left world-readable, the provider keeps the old
credential valid, the test message is accepted but never delivered, the app is not really reloaded and keeps
the old credential, the rotation log row disappears.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from staging.provider_standins import ProviderStandIns

Action = Callable[[pytest.FixtureRequest], None]

CREATE_STEPS = {
    "twilio": "a new Twilio auth token is created in the Twilio Console as the secondary auth token",
    "whatsapp": "a new WhatsApp access token is generated for the system user in Meta Business Suite",
    "smtp": "a new SMTP password is generated at the email provider",
}
ENV_STEPS = {
    "twilio": "the .env file is updated with the new Twilio auth token",
    "whatsapp": "the .env file is updated with the new WhatsApp access token",
    "smtp": "the .env file is updated with the new SMTP password",
}
RETIRE_STEPS = {
    "twilio": "the new Twilio auth token is promoted to primary",
    "whatsapp": "the old WhatsApp access token is revoked in Meta Business Suite",
    "smtp": "the old SMTP password is revoked at the email provider",
}
LOG_STEPS = {
    "twilio": "the Twilio auth token rotation is logged",
    "whatsapp": "the WhatsApp access token rotation is logged",
    "smtp": "the SMTP password rotation is logged",
}
RELOAD_STEP = "the application is reloaded"


def _standins(request: pytest.FixtureRequest) -> ProviderStandIns:
    standins = request.getfixturevalue("standins")
    assert standins is not None, "provider sabotage needs the staging stand-ins"
    return standins


def keep_old_valid(name: str) -> Action:
    def action(request: pytest.FixtureRequest) -> None:
        s = _standins(request)
        if name == "twilio":
            s.twilio.keep_old_tokens_valid = True
        elif name == "whatsapp":
            s.graph.keep_revoked_tokens_valid = True
        else:  # the console said "revoked" but the provider still takes the old password
            s.smtp.add_password(request.getfixturevalue("provider_rotation").pair.old)
    return action


def drop_messages(name: str) -> Action:
    def action(request: pytest.FixtureRequest) -> None:
        s = _standins(request)
        {"twilio": s.twilio, "whatsapp": s.graph, "smtp": s.smtp}[name].drop_messages = True
    return action


def refuse_new(name: str) -> Action:
    """The provider no longer accepts the credential it just issued (deleted, revoked, never activated)."""
    def action(request: pytest.FixtureRequest) -> None:
        s = _standins(request)
        new = request.getfixturevalue("provider_rotation").pair.new
        if name == "twilio":
            s.twilio.secondary = None
        elif name == "whatsapp":
            s.graph.revoked.add(new)
        else:
            s.smtp.remove_password(new)
    return action


def provider_sabotages(app_keeps_old: Action, delete_log: Action,
                       env_readable: Action) -> dict[str, tuple[str, Action]]:
    table: dict[str, tuple[str, Action]] = {}
    for name in ("twilio", "whatsapp", "smtp"):
        table[f"{name}:new-credential-refused"] = (CREATE_STEPS[name], refuse_new(name))
        table[f"{name}:env-0644"] = (ENV_STEPS[name], env_readable)
        table[f"{name}:old-credential-kept-valid"] = (RETIRE_STEPS[name], keep_old_valid(name))
        table[f"{name}:test-message-not-delivered"] = (RELOAD_STEP, drop_messages(name))
        table[f"{name}:app-not-reloaded"] = (RELOAD_STEP, app_keeps_old)
        table[f"{name}:rotation-log-missing"] = (LOG_STEPS[name], delete_log)
    return table
