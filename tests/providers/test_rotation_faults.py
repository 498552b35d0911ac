"""Provider faults during a whole rotation (the procedure's steps in the scheduled scenario's order, in-process, real
stand-ins, real app stand-in): 5xx and timeouts are retried with bounded backoff; an outage that outlasts the retries
fails the rotation cleanly, with .env, its backup and the provider agreeing and the app healthy on a credential the
provider accepts; the same steps run again then finish it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from rotation.core import app_control, envfile, state
from rotation.core.secret import Secret
from rotation.providers.base import AnswerLost, ProviderError, ProviderUnavailable, RetryPolicy
from staging.app import loaded_fingerprints
from staging.provider_standins import ProviderStandIns
from tests.providers.conftest import ProviderWorld, credential_of, leaked, run_all_steps

POLICY = RetryPolicy(attempts=4, first_delay_s=0.01, max_delay_s=0.05, timeout_s=0.5)


@dataclass(frozen=True)
class Outage:
    """How to break one provider's issuing or retiring (the app's read-only checks keep working)."""

    transient: Callable[[ProviderStandIns, int], None]   # the next n calls fail, then the provider recovers
    issue: Callable[[ProviderStandIns, int], None]       # issuing the new credential fails
    retire: Callable[[ProviderStandIns, int], None]      # retiring the old credential fails
    hang: Callable[[ProviderStandIns, int], None]        # the next n calls stall past the client timeout


def _http(attr: str, match: str = "") -> Callable[[ProviderStandIns, int], None]:
    return lambda s, n: getattr(s, attr).faults.fail_next(n, 503, match=match)


def _hang(attr: str, match: str) -> Callable[[ProviderStandIns, int], None]:
    return lambda s, n: getattr(s, attr).faults.hang_next(n, 0.8, match=match)


def _console(match: str) -> Callable[[ProviderStandIns, int], None]:
    return lambda s, n: s.smtp.console_faults.fail_next(n, 503, match=match)


def _smtp_refusals(s: ProviderStandIns, n: int) -> None:
    s.smtp.faults.refuse_next(n)


def _smtp_hangs(s: ProviderStandIns, n: int) -> None:
    s.smtp.faults.hang_next(n, 0.8)


OUTAGES = {
    "twilio": Outage(_http("twilio", "/AuthTokens"), _http("twilio", "/AuthTokens/Secondary"),
                     _http("twilio", "/AuthTokens/Promote"), _hang("twilio", "/AuthTokens/Secondary")),
    "whatsapp": Outage(_http("graph", "/access_tokens"), _http("graph", "/access_tokens"),
                       _http("graph", "/oauth/revoke"), _hang("graph", "/access_tokens")),
    # SMTP has no rotation API: the server refuses (421) or stalls, or the provider's console is down
    "smtp": Outage(_smtp_refusals, _console("/_admin/passwords"), _console("/revoke"), _smtp_hangs),
}
PROVIDERS = list(OUTAGES)
FOREVER = 10**9


def run(pw: ProviderWorld, name: str) -> None:
    run_all_steps(pw.rotation(name, POLICY))


def assert_clean_failure(pw: ProviderWorld, name: str, credential_in_env: Secret) -> None:
    """.env holds a credential the provider accepts, the app is healthy on it, and the backup holds the original."""
    provider = pw.provider(name)
    in_env = pw.in_env(name)
    assert in_env == credential_in_env
    health = app_control.wait_for_health(pw.deployment.app.health_url, timeout_s=10)
    assert health.healthy, health.body
    assert loaded_fingerprints(pw.deployment.app.health_url)[provider.env_name] == in_env.fingerprint
    assert provider.check(in_env).accepted
    backups = envfile.backups(pw.env_file)
    assert backups and Secret(envfile.read_env(backups[-1])[provider.env_name]) == pw.originals[name]


def assert_rotated(pw: ProviderWorld, name: str) -> None:
    provider = pw.provider(name)
    new = pw.in_env(name)
    recorded = state.load(pw.env_file, provider.credential_type)
    assert new != pw.originals[name] and recorded is not None and recorded.step == "finish"
    assert provider.check(new).accepted and not provider.check(pw.originals[name]).accepted
    health = app_control.wait_for_health(pw.deployment.app.health_url, timeout_s=10)
    assert health.healthy, health.body
    assert loaded_fingerprints(pw.deployment.app.health_url)[provider.env_name] == new.fingerprint


def clear_faults(pw: ProviderWorld) -> None:
    pw.standins.twilio.faults.clear()
    pw.standins.graph.faults.clear()
    pw.standins.smtp.console_faults.clear()
    pw.standins.smtp.faults.clear()


@pytest.mark.parametrize("name", PROVIDERS)
def test_three_503s_then_success_the_rotation_completes(provider_world: ProviderWorld, name: str) -> None:
    OUTAGES[name].transient(provider_world.standins, 3)
    run(provider_world, name)
    s = provider_world.standins
    assert s.smtp.faults.injected + s.twilio.faults.injected + s.graph.faults.injected == 3
    assert_rotated(provider_world, name)


@pytest.mark.parametrize("name", PROVIDERS)
def test_503_forever_before_anything_changed_fails_cleanly(provider_world: ProviderWorld, name: str) -> None:
    OUTAGES[name].issue(provider_world.standins, FOREVER)
    with pytest.raises(ProviderError) as caught:
        run(provider_world, name)
    assert "gave up after 4 attempts" in str(caught.value) or "console" in str(caught.value)
    assert not leaked(str(caught.value), provider_world.originals[name])
    assert_clean_failure(provider_world, name, provider_world.originals[name])
    assert state.load(provider_world.env_file, credential_of(name).type) is None  # nothing to resume


@pytest.mark.parametrize("name", PROVIDERS)
def test_503_forever_at_retirement_fails_cleanly_and_the_rerun_finishes(provider_world: ProviderWorld,
                                                                        name: str) -> None:
    OUTAGES[name].retire(provider_world.standins, FOREVER)
    with pytest.raises(ProviderError) as caught:
        run(provider_world, name)
    new = provider_world.in_env(name)
    assert not leaked(str(caught.value), new, provider_world.originals[name])
    # the app already runs on the new credential; the old one still works: nothing is lost
    assert_clean_failure(provider_world, name, new)
    assert provider_world.provider(name).check(provider_world.originals[name]).accepted
    recorded = state.load(provider_world.env_file, credential_of(name).type)
    assert recorded is not None and recorded.step == "test"
    clear_faults(provider_world)
    run(provider_world, name)
    assert_rotated(provider_world, name)


@pytest.mark.parametrize("name", ["twilio", "smtp"])
def test_a_timeout_behaves_like_a_503(provider_world: ProviderWorld, name: str) -> None:
    OUTAGES[name].hang(provider_world.standins, 1)
    run(provider_world, name)
    assert_rotated(provider_world, name)


def test_a_timeout_on_metas_token_mint_is_not_retried_and_changes_nothing(provider_world: ProviderWorld) -> None:
    """Meta may have minted the token whose answer timed out, and nothing can find it: never minted again (issue 22
    item 5); the rotation stops before anything changed, saying so."""
    OUTAGES["whatsapp"].hang(provider_world.standins, 1)
    with pytest.raises(AnswerLost, match=r"no answer within 0.5s after the request reached Meta.*not minted again"):
        run(provider_world, "whatsapp")
    assert [r for r in provider_world.standins.graph.requests if r[1].endswith("/access_tokens")] == []  # dropped
    assert_clean_failure(provider_world, "whatsapp", provider_world.originals["whatsapp"])
    assert state.load(provider_world.env_file, credential_of("whatsapp").type) is None


@pytest.mark.parametrize("name", ["twilio", "whatsapp"])
def test_timeouts_forever_fail_like_503s_forever(provider_world: ProviderWorld, name: str) -> None:
    OUTAGES[name].hang(provider_world.standins, FOREVER)
    with pytest.raises(ProviderUnavailable, match="no answer within 0.5s"):
        run(provider_world, name)
    clear_faults(provider_world)
    assert_clean_failure(provider_world, name, provider_world.originals[name])
