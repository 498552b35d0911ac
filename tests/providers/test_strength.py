"""The default strength policies of the configuration (rotation/core/rotation.toml, [credentials.*] strength) accept
what each issuer really issues, and refuse a short, uniform, unchanged or reused value, naming it by fingerprint."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable

import pytest

from rotation.core.config import Credential, default_config
from rotation.core.keys import WeakSecretError, check_strength, generate_key
from rotation.core.secret import Secret

CONFIG = default_config()
DRAWS = 300  # random values per issuer: a policy refusing 1 real value in 100 fails here almost always

# What each issuer hands out, by the credential's label (read from the registry below)
ISSUED: dict[str, Callable[[], str]] = {
    "SMTP password": lambda: "".join(secrets.choice(string.ascii_lowercase) for _ in range(16)),  # Gmail App Password
    "Twilio auth token": lambda: secrets.token_hex(16),  # 32 lower-case hex digits
    "WhatsApp access token": lambda: "EAAG" + "".join(secrets.choice(string.ascii_letters + string.digits)
                                                      for _ in range(190)),  # a Meta system-user token
    "database encryption key": lambda: secrets.token_urlsafe(32),  # the runbook's key: 43 characters
}


def credential(label: str) -> Credential:
    return CONFIG.credential(label)


def test_every_credential_of_the_registry_has_an_example_here() -> None:
    assert sorted(c.label for c in CONFIG.credentials) == sorted(ISSUED)


@pytest.mark.parametrize("label", sorted(ISSUED))
def test_the_defaults_accept_what_the_issuer_issues(label: str) -> None:
    policy = credential(label).strength
    for _ in range(DRAWS):
        check_strength(Secret(ISSUED[label]()), policy, name=label)


def test_a_hex_database_key_and_the_generated_one_are_accepted_too() -> None:
    policy = credential("database encryption key").strength
    check_strength(Secret(secrets.token_hex(32)), policy, name="openssl rand -hex 32")
    check_strength(generate_key(), policy, name="rotation's generate_key")


@pytest.mark.parametrize("label", sorted(ISSUED))
def test_the_defaults_refuse_short_uniform_unchanged_and_reused_values(label: str) -> None:
    policy = credential(label).strength
    value = Secret(ISSUED[label]())
    other = Secret(ISSUED[label]())
    refusals = {
        "short": (Secret(ISSUED[label]()[: policy.min_length - 1]), {}, "characters; at least"),
        "uniform": (Secret("EA" + "ab" * 40 if label.startswith("WhatsApp") else "ab" * 32), {},
                    "different characters"),
        "unchanged": (value, {"current": value}, "it is the current value, unchanged"),
        "reused": (value, {"current": other, "others": [Secret("x"), value]}, "another credential already uses"),
    }
    for case, (candidate, context, says) in refusals.items():
        with pytest.raises(WeakSecretError) as refused:
            check_strength(candidate, policy, name=f"the new {label}", **context)  # type: ignore[arg-type]
        message = str(refused.value)
        assert says in message, f"{label} {case}: {message}"
        assert candidate.reveal() not in message and candidate.fingerprint in message, f"{label} {case}"
