"""Steps of runbook sections 2-4: WhatsApp access token, Twilio auth token and SMTP password rotations.

Thin: each step calls rotation.provider_rotation / rotation.providers and records evidence. Credentials are named
by fingerprint only; every credential the run touches is registered with the evidence secret scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pytest_bdd import given, parsers, then, when

from rotation.core import app_control, envfile
from rotation.core.database import connect
from rotation.core.rotation_log import find_rotation
from rotation.core.secret import Secret, fingerprint, secret, sha256_hex
from rotation.providers import procedure as rotation
from rotation.providers.base import CheckResult, Delivery, Provider, RetryPolicy
from rotation.providers.factory import STAGING_POLICY, provider_for
from staging.provider_standins import ProviderStandIns
from staging.world import World

REASON = "Scheduled 90-day rotation"
LABELS = {"Twilio auth token": "twilio", "WhatsApp access token": "whatsapp", "SMTP password": "smtp"}
CRED = r"(?P<label>Twilio auth token|WhatsApp access token|SMTP password)"
SOURCES = {
    "twilio": {"check": "GET /2010-04-01/Accounts/{Sid}.json (twilio SDK, HTTP Basic)",
               "issue": "POST /v1/AuthTokens/Secondary (client.accounts.v1.secondary_auth_token().create())",
               "retire": "POST /v1/AuthTokens/Promote (client.accounts.v1.auth_token_promotion().update())",
               "send": "POST /2010-04-01/Accounts/{Sid}/Messages.json (client.messages.create)"},
    "whatsapp": {"check": "GET /{v}/{phone-number-id} with Authorization: Bearer (requests)",
                 "issue": "POST /{v}/{system-user-id}/access_tokens with appsecret_proof",
                 "retire": "POST /{v}/oauth/revoke (revoke_token=old, access_token=new)",
                 "send": "POST /{v}/{phone-number-id}/messages {messaging_product: whatsapp, type: text}"},
    "smtp": {"check": "smtplib: EHLO, STARTTLS (verifying context), AUTH",
             "issue": "the provider console (staging: the stand-in's console; live: $SMTP_NEW_PASSWORD or a prompt)",
             "retire": "the provider console (staging: the stand-in's console; live: the operator)",
             "send": "smtplib: STARTTLS, AUTH, MAIL FROM / RCPT TO / DATA"},
}


@dataclass
class ProviderRotation:
    label: str = ""
    provider: Provider | None = None
    pair: rotation.Pair | None = None
    current: Secret | None = None
    env_before: dict[str, str] = field(default_factory=dict)
    delivery: Delivery | None = None
    rejected: CheckResult | None = None

    @property
    def name(self) -> str:
        return LABELS[self.label]


@pytest.fixture
def provider_rotation() -> ProviderRotation:
    return ProviderRotation()


def policy_for(world: World) -> RetryPolicy:
    return STAGING_POLICY if world.target == "staging" else RetryPolicy()


def _provider(world: World, standins: ProviderStandIns | None, name: str) -> Provider:
    console = standins.smtp_console if standins else None
    return provider_for(name, envfile.read_env(world.env_file), policy=policy_for(world), smtp_console=console)


def _need(p: ProviderRotation) -> tuple[Provider, rotation.Pair]:
    assert p.provider is not None and p.pair is not None, "no rotation was started in this scenario"
    return p.provider, p.pair


@given(parsers.re(rf"the application is running with the current {CRED}"))
def running_with_current(world: World, standins: ProviderStandIns | None, provider_rotation: ProviderRotation,
                         label: str, evidence) -> None:
    for value in standins.secrets() if standins else []:
        evidence.register_secret(value)
    provider_rotation.label = label
    provider = provider_rotation.provider = _provider(world, standins, LABELS[label])
    current = provider_rotation.current = secret(envfile.get_value(world.env_file, provider.env_name))
    evidence.register_secret(current)
    health = app_control.wait_for_health(world.app.health_url, timeout_s=world.app.health_timeout_s)
    in_app = rotation.app_credential(health, provider)
    evidence.record(f"current {label}", {"fingerprint": fingerprint(current), "length": len(current),
                                         "app reports": in_app, "health": health.status_code},
                    source=f"{world.env_file.name}: {provider.env_name}; GET {world.app.health_url}")
    assert health.healthy, f"the app is not healthy: {health.status_code} {health.body}"
    assert in_app == fingerprint(current), f"the app runs on {in_app}, not the configured {fingerprint(current)}"


@when(parsers.re(rf"a new {CRED} is (?:created|generated) (?:in|at|for) .+"))
def new_credential(world: World, provider_rotation: ProviderRotation, backup_file: dict[str, Path], label: str,
                   evidence) -> None:
    provider = provider_rotation.provider
    assert provider is not None
    provider_rotation.env_before = envfile.read_env(world.env_file)
    pair = provider_rotation.pair = rotation.begin(world.env_file, provider, backup=backup_file["path"], reason=REASON)
    evidence.register_secret(pair.new)
    state_file = rotation.pending_path(world.env_file, provider.credential_type)
    evidence.record(f"new {label}", {"fingerprint": fingerprint(pair.new), "length": len(pair.new),
                                     "replaces": fingerprint(pair.old), "state": "PENDING (step create)",
                                     "kept until .env holds it in": f"{state_file.name} (mode "
                                                                    f"{oct(envfile.file_mode(state_file))})"},
                    source=SOURCES[provider.name]["issue"])
    assert pair.new != pair.old, "the provider returned the current credential again"


@then(parsers.re(rf"the new {CRED} is tested with .+ before full deployment"))
def tested_before_deployment(provider_rotation: ProviderRotation, label: str, evidence) -> None:
    provider, pair = _need(provider_rotation)
    result = provider.check(pair.new)
    evidence.record(f"new {label} tested before deployment", result.as_evidence(),
                    source=SOURCES[provider.name]["check"])
    assert result.accepted, f"the new {label} is refused: {result.status} {result.code} {result.detail}"


@when(parsers.re(rf"the .env file is updated with the new {CRED}"))
def env_updated(world: World, provider_rotation: ProviderRotation, label: str, evidence) -> None:
    provider, pair = _need(provider_rotation)
    rotation.update_env(world.env_file, provider, pair)
    evidence.record(".env updated", {provider.env_name: fingerprint(pair.new), "state": "step set"},
                    source=f"atomic rewrite of {world.env_file.name} (temp file, fsync, rename, mode 0600)")


@then(parsers.re(rf"the .env file holds the new {CRED}, keeps mode 0600 and every other setting"))
def env_intact(world: World, provider_rotation: ProviderRotation, label: str, evidence) -> None:
    provider, pair = _need(provider_rotation)
    after = envfile.read_env(world.env_file)
    before = provider_rotation.env_before
    mode = envfile.file_mode(world.env_file)
    changed = sorted(k for k in before.keys() | after.keys()
                     if k != provider.env_name and before.get(k) != after.get(k))
    evidence.record(".env after update", {"mode": oct(mode), "other settings changed": changed,
                                          provider.env_name: fingerprint(after.get(provider.env_name, ""))},
                    source=f"stat {world.env_file.name}; python-dotenv parse")
    assert mode == 0o600, f"{world.env_file.name} has mode {oct(mode)}, not 0600"
    assert not changed, f"the update changed other settings: {changed}"
    assert after.get(provider.env_name) == pair.new, f"{provider.env_name} in .env is not the new {label}"


@when("the application is reloaded")
def app_reloaded(world: World, evidence) -> None:
    how = app_control.reload_or_restart(world.app)
    evidence.record("application reloaded", {"how": how}, source=world.app.reload or world.app.restart)


@then(parsers.re(rf"the application uses the new {CRED}"))
def app_uses_new(world: World, provider_rotation: ProviderRotation, label: str, evidence) -> None:
    provider, pair = _need(provider_rotation)
    health = app_control.health(world.app.health_url)
    in_app = rotation.app_credential(health, provider)
    check = health.body.get("checks", {}).get(provider.name, {})
    evidence.record(f"{label} loaded by the app", check, source=f"GET {world.app.health_url}")
    assert in_app == fingerprint(pair.new), (
        f"the app uses {in_app}, not the new {label} {fingerprint(pair.new)}: it was not reloaded")
    assert check.get("ok") is True, f"the app's {provider.name} check fails with the new {label}: {check}"


@when(parsers.re(rf"a test (?:SMS|WhatsApp message|email) is sent to the admin (?:number|address) with the new {CRED}"))
def test_message_sent(provider_rotation: ProviderRotation, label: str, evidence) -> None:
    provider, pair = _need(provider_rotation)
    delivery = provider_rotation.delivery = rotation.send_test(provider, pair)
    evidence.record("test message accepted by the provider", delivery.__dict__, source=SOURCES[provider.name]["send"])


@then(parsers.re(r"the test (?:SMS|WhatsApp message|email) is delivered to the admin (?:number|address)"))
def test_message_delivered(world: World, standins: ProviderStandIns | None, provider_rotation: ProviderRotation,
                           evidence) -> None:
    provider, pair = _need(provider_rotation)
    delivery = provider_rotation.delivery
    assert delivery is not None, "no test message was sent"
    verdict = _delivery_verdict(provider, pair, delivery, standins)
    evidence.record("test message delivery", verdict, source=verdict.pop("source"))
    assert verdict["delivered"], f"the test message {delivery.message_id} was not delivered: {verdict}"
    rotation.mark_tested(world.env_file, provider)


def _delivery_verdict(provider: Provider, pair: rotation.Pair, delivery: Delivery,
                      standins: ProviderStandIns | None) -> dict[str, object]:
    """Twilio reports the carrier's verdict per message; staging also reads the stand-in's mailbox/handset."""
    verdict: dict[str, object] = {"message": delivery.message_id, "recipient": delivery.recipient}
    if provider.name == "twilio":
        status, error = provider.message_status(pair.new, delivery.message_id)  # type: ignore[attr-defined]
        verdict.update({"twilio status": status, "error code": error, "delivered": status in ("delivered", "sent"),
                        "source": "GET /2010-04-01/Accounts/{Sid}/Messages/{MessageSid}.json"})
    if standins is None:
        verdict.setdefault("delivered", True)
        verdict.setdefault("source", "provider acceptance; receipt to be confirmed by the operator")
        return verdict
    inbox = {"twilio": standins.twilio, "whatsapp": standins.graph, "smtp": standins.smtp}[provider.name]
    received = inbox.delivered_to(delivery.recipient)
    ids = [str(m.get("sid") or m.get("id") or m.get("data", b"")) for m in received]
    found = any(delivery.message_id in i for i in ids)
    verdict.update({"received by the admin (stand-in)": found,
                    "delivered": bool(verdict.get("delivered", True)) and found,
                    "source": f"{verdict.get('source', 'provider acceptance')}; stand-in delivery record"})
    return verdict


@when(parsers.re(r"the (?:new|old) (?:Twilio auth token|WhatsApp access token|SMTP password) is "
                 r"(?:promoted to primary|revoked (?:in|at) .+)"))
def old_retired(provider_rotation: ProviderRotation, evidence) -> None:
    provider, pair = _need(provider_rotation)
    provider.retire_old(pair.old, pair.new)
    evidence.record("old credential retired at the provider", {"retired": fingerprint(pair.old),
                                                               "now current": fingerprint(pair.new)},
                    source=SOURCES[provider.name]["retire"])


@then(parsers.re(rf"the old {CRED} is rejected with (?:HTTP|SMTP reply) (?P<status>\d+) and "
                 r"(?:error code|enhanced status code) (?P<code>[\d.]+)"))
def old_rejected(provider_rotation: ProviderRotation, label: str, status: str, code: str, evidence) -> None:
    provider, pair = _need(provider_rotation)
    result = provider.check(pair.old)
    evidence.record(f"old {label} after retirement", result.as_evidence(), source=SOURCES[provider.name]["check"])
    assert not result.accepted, f"the old {label} {fingerprint(pair.old)} is still accepted: {result.detail}"
    assert (str(result.status), str(result.code)) == (status, code), (
        f"the old {label} was refused with {result.status}/{result.code}, not {status}/{code}")


@then(parsers.re(rf"the new {CRED} still works and the application is still healthy"))
def new_still_works(world: World, provider_rotation: ProviderRotation, label: str, evidence) -> None:
    provider, pair = _need(provider_rotation)
    result = provider.check(pair.new)
    health = app_control.wait_for_health(world.app.health_url, timeout_s=world.app.health_timeout_s)
    evidence.record(f"new {label} after retirement", {**result.as_evidence(), "app health": health.status_code,
                                                      "app uses": rotation.app_credential(health, provider)},
                    source=f"{SOURCES[provider.name]['check']}; GET {world.app.health_url}")
    assert result.accepted, f"the new {label} stopped working: {result.status} {result.code}"
    assert health.healthy, f"the app is not healthy after the old {label} was retired: {health.body}"


@when(parsers.re(rf"the {CRED} rotation is logged"))
def rotation_logged(world: World, provider_rotation: ProviderRotation, operator: str, label: str, evidence) -> None:
    provider, pair = _need(provider_rotation)
    record = rotation.log(world.dsn, world.env_file, provider, pair, rotated_by=operator, reason=REASON)
    evidence.record("rotation log row written", {k: str(v) for k, v in record.__dict__.items()},
                    source="INSERT INTO security_credential_rotations (credential_type, rotated_by, previous_key_hash, "
                           f"rotation_reason, next_rotation_due) VALUES ('{provider.credential_type}', ...)")


@then(parsers.re(r"security_credential_rotations records the (?P<ctype>\w+) rotation with the previous credential's "
                 r"hash and the next rotation due in 90 days"))
def log_row_present(world: World, provider_rotation: ProviderRotation, operator: str, ctype: str, evidence) -> None:
    provider, pair = _need(provider_rotation)
    with connect(world.dsn) as conn:
        found = find_rotation(conn, ctype, pair.old)
    evidence.record("rotation log row read back", {k: str(v) for k, v in found.__dict__.items()} if found else None,
                    source=f"SELECT ... FROM security_credential_rotations WHERE credential_type = '{ctype}' "
                           "AND previous_key_hash = sha256(old credential)")
    assert found is not None, f"no security_credential_rotations row records this {ctype} rotation"
    assert found.previous_key_hash == sha256_hex(pair.old) and found.rotated_by == operator
    assert found.rotation_reason == REASON
    assert (found.next_rotation_due - found.rotated_at).days == 90, "next_rotation_due is not 90 days out"
