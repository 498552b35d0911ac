"""Steps of the runbook's "Troubleshooting". Diagnoses and repairs live in rotation.troubleshoot (and the operator's
`rotation db-key resume`); staging creates each trouble for real (a broken .env, a killed re-encryption)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_bdd import given, then, when

from rotation.core import app_control, envfile
from rotation.core.keys import generate_key
from rotation.core.secret import fingerprint
from rotation.db_key import procedure as db_key
from rotation.providers.base import CheckResult, Provider, RetryPolicy
from rotation.providers.factory import STAGING_POLICY, provider_for
from rotation.providers.procedure import app_credential
from rotation.troubleshooting import diagnose as troubleshoot
from staging.world import World

PROJECT = Path(__file__).resolve().parents[1]


@dataclass
class Trouble:
    """What the scenario broke and what the diagnosis and repair found."""

    victim: str | None = None              # client_id the killed rotation had not reached
    census: troubleshoot.KeyCensus | None = None
    repair_exit: int | None = None
    repair_output: str = ""
    restored_from: Path | None = None


@pytest.fixture
def trouble() -> Trouble:
    return Trouble()


# --- shared ------------------------------------------------------------------------------------------------------

@when("the application services are restarted")
def app_restarted(world: World, evidence) -> None:
    app_control.run(world.app.restart)
    evidence.record("app restarted", {"command": world.app.restart}, source=world.app.restart)


@then("the application is not healthy")
def app_unhealthy(world: World, evidence) -> None:
    result = app_control.wait_for_health(world.app.health_url, healthy=False, timeout_s=world.app.health_timeout_s)
    evidence.record("health", {"status": result.status_code, "body": result.body}, source=f"GET {world.app.health_url}")
    assert not result.healthy, "the app is healthy: the trouble this scenario repairs did not happen"


# --- the app won't start ---------------------------------------------------------------------------------------------

@given("a rotation left a DB_ENCRYPTION_KEY line in .env that python-dotenv cannot parse")
def broken_env(world: World, evidence) -> None:
    if world.target != "staging":
        pytest.skip("breaks .env on purpose: staging only")
    new_key = generate_key()
    evidence.register_secret(new_key)
    text = world.env_file.read_text()
    # an unterminated quote, as a hand edit (or `sed` with a quoting slip) leaves it
    lines = [f'DB_ENCRYPTION_KEY="{new_key}' if line.startswith("DB_ENCRYPTION_KEY=") else line
             for line in text.splitlines()]
    fd = os.open(world.env_file, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")


@then("the .env syntax check names the line python-dotenv cannot parse")
def syntax_named(world: World, evidence) -> None:
    bad = troubleshoot.env_syntax_errors(world.env_file)
    expected = [n for n, line in enumerate(world.env_file.read_text().splitlines(), 1)
                if line.startswith("DB_ENCRYPTION_KEY=")]
    evidence.record(".env syntax check", {"unparsable lines": bad},
                    source=f"python-dotenv parse_stream over {world.env_file.name}")
    assert bad == expected, f"syntax check reported lines {bad}, expected {expected}"


@when(".env is restored from the newest backup")
def restored(world: World, trouble: Trouble, evidence) -> None:
    trouble.restored_from = troubleshoot.restore_newest_backup(world.env_file)
    evidence.record(".env restored", {"from": trouble.restored_from.name,
                                      "DB_ENCRYPTION_KEY": fingerprint(envfile.get_value(world.env_file,
                                                                                           db_key.ENV_NAME))},
                    source=f"cp {trouble.restored_from.name} {world.env_file.name} (atomic, mode 0600)")


@then("the .env syntax check passes")
def syntax_ok(world: World) -> None:
    bad = troubleshoot.env_syntax_errors(world.env_file)
    assert not bad, f"{world.env_file.name} still has unparsable lines {bad}"


@then(".env has mode 0600 after the restore")
def restored_mode(world: World) -> None:
    mode = envfile.file_mode(world.env_file)
    assert mode == 0o600, f"{world.env_file.name} has mode {mode:04o} after the restore"


# --- decryption fails after a key rotation: steps/troubleshooting_decryption.py --------------------------------


# --- API calls fail after a token rotation -------------------------------------------------------------------------

def _twilio(world: World) -> Provider:
    """The Twilio adapter on the app's .env settings (staging: the stand-in's endpoint)."""
    policy = STAGING_POLICY if world.target == "staging" else RetryPolicy()
    return provider_for("twilio", envfile.read_env(world.env_file), policy=policy)


@given("the Twilio auth token was rotated at Twilio and in .env, but the application was not reloaded")
def rotated_without_reload(world: World, evidence) -> None:
    if world.target != "staging":
        pytest.skip("rotates the token behind the app's back: staging only (live: run the checks below)")
    provider = _twilio(world)
    old = envfile.get_value(world.env_file, provider.env_name)
    new = provider.issue(old)
    evidence.register_secret(new)
    provider.retire_old(old, new)  # promotion: the old primary, which the app still holds, stops working
    envfile.set_value(world.env_file, provider.env_name, new)
    evidence.record("token rotated without reload", {"old": fingerprint(old), "new": fingerprint(new)},
                    source="POST /v1/AuthTokens/Secondary; POST /v1/AuthTokens/Promote; .env updated; no reload")


@then("the application's Twilio API calls fail")
def twilio_calls_fail(world: World, evidence) -> None:
    health = app_control.wait_for_health(world.app.health_url, healthy=False, timeout_s=world.app.health_timeout_s)
    twilio = health.body.get("checks", {}).get("twilio", {})
    evidence.record("app's Twilio check", twilio, source=f"GET {world.app.health_url}")
    assert not health.healthy and not twilio.get("ok", True), "the app's Twilio calls still succeed"


@when("the Twilio auth token in .env is checked with Twilio", target_fixture="token_check")
def token_checked(world: World, evidence) -> CheckResult:
    provider = _twilio(world)
    result = provider.check(envfile.get_value(world.env_file, provider.env_name))
    evidence.record("Twilio check of the token in .env", result.as_evidence(),
                    source="GET /2010-04-01/Accounts/{Sid}.json with the token from .env (read-only)")
    return result


@then("Twilio accepts the Twilio auth token in .env")
def token_accepted(token_check: CheckResult) -> None:
    assert token_check.accepted, f"Twilio refuses the token in .env: {token_check.status} {token_check.code}"


@then(".env has no typo: it parses and the Twilio auth token is 32 hexadecimal digits")
def no_typo(world: World, evidence) -> None:
    lines = troubleshoot.env_syntax_errors(world.env_file)
    typos = troubleshoot.token_typos("TWILIO_AUTH_TOKEN", envfile.get_value(world.env_file, "TWILIO_AUTH_TOKEN"))
    evidence.record(".env typo check", {"unparsable lines": lines, "token problems": typos},
                    source="python-dotenv parse_stream; rotation.troubleshoot.token_typos")
    assert not lines and not typos, f"unparsable lines {lines}; {'; '.join(typos)}"


@then("the application runs on a configuration loaded before .env last changed, with another Twilio auth token")
def app_stale(world: World, evidence) -> None:
    provider = _twilio(world)
    health = app_control.health(world.app.health_url)
    loaded_at = health.body.get("env_loaded_at")
    in_app = app_credential(health, provider)
    in_env = fingerprint(envfile.get_value(world.env_file, provider.env_name))
    evidence.record("app configuration vs .env", {"app loaded .env at": loaded_at, ".env modified": troubleshoot
                                                  .describe_mtime(world.env_file), "app token": in_app,
                                                  ".env token": in_env},
                    source=f"GET {world.app.health_url} (env_loaded_at, checks.twilio.credential_fingerprint); "
                           f"stat {world.env_file.name}")
    assert troubleshoot.app_config_is_stale(loaded_at, world.env_file), "the app loaded .env after its last change"
    assert in_app != in_env, "the app already uses the token in .env"


@then("the application uses the Twilio auth token in .env")
def app_uses_env_token(world: World) -> None:
    provider = _twilio(world)
    in_app = app_credential(app_control.health(world.app.health_url), provider)
    in_env = fingerprint(envfile.get_value(world.env_file, provider.env_name))
    assert in_app == in_env, f"the app uses {in_app}, .env holds {in_env}"
