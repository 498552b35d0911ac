"""Issue 22 for Twilio and WhatsApp: the operator's `rotation provider rotate` against stand-ins that fail as the real
providers do. For each provider: the old credential still valid after the step that needs it revoked; a temporary
authentication failure (never counted as revoked); a lost answer to the create / mint; a lost answer to the test
message; 429 with Retry-After: 2; a missing required setting. Each asserts, from the run's signed evidence, which step
failed and why (or that the run passed and what it recorded), and what the provider holds afterwards."""

from __future__ import annotations

import pytest

from rotation.core import app_control, state
from rotation.core.secret import Secret
from tests.harness import SuiteRun, read_evidence
from tests.providers.conftest import ProviderWorld, credential_of, leaked
from tests.providers.test_provider_command import assert_rotated, log_rows

PROVIDERS = ["twilio", "whatsapp"]
REVOKE_WAIT = ("--revoke-wait", "1")  # ask the provider for a second, not five minutes, whether the old one is dead
STEPS = {
    "twilio": {"create": "a new Twilio auth token is created as the secondary auth token",
               "retire": "the new Twilio auth token is promoted to primary",
               "send": "a test SMS is sent to the admin number with the new Twilio auth token"},
    "whatsapp": {"create": "a new WhatsApp access token is generated for the system user",
                 "retire": "the old WhatsApp access token is revoked",
                 "send": "a test WhatsApp message is sent to the admin number with the new WhatsApp access token"},
}
BACKGROUND = {"twilio": "the application is running with the current Twilio auth token",
              "whatsapp": "the application is running with the current WhatsApp access token"}


def records(run: SuiteRun, name: str) -> list[dict[str, object]]:
    assert run.run_folder is not None, run.output[-3000:]
    return [e["value"] for e in read_evidence(run.run_folder)  # type: ignore[misc]
            if e.get("type") == "evidence" and str(e.get("name", "")) == name and isinstance(e.get("value"), dict)]


def journal(run: SuiteRun, provider: str) -> list[dict[str, object]]:
    """Every entry the adapter noted (waits before retries, lost answers), as the evidence records them."""
    return [entry for r in records(run, f"{provider}: waits and lost answers")
            for entry in r["entries"]]  # type: ignore[attr-defined]


def retirement(run: SuiteRun, provider: str) -> dict[str, object]:
    [record] = records(run, f"old {credential_of(provider).label} retired")
    return record


def unchanged(pw: ProviderWorld, provider: str, env_before: bytes) -> None:
    """Nothing changed: .env byte for byte, no rotation state, the app healthy on the original credential."""
    assert pw.env_file.read_bytes() == env_before, ".env changed"
    assert state.load(pw.env_file, credential_of(provider).type) is None
    assert app_control.wait_for_health(pw.deployment.app.health_url, timeout_s=10).healthy
    assert log_rows(pw, provider) == 0


def break_revocation(pw: ProviderWorld, provider: str) -> None:
    setattr(pw.standins.twilio if provider == "twilio" else pw.standins.graph,
            "keep_old_tokens_valid" if provider == "twilio" else "keep_revoked_tokens_valid", True)


def auth_outage_for_the_old(pw: ProviderWorld, provider: str, on: bool) -> None:
    setattr(pw.standins.twilio if provider == "twilio" else pw.standins.graph,
            "auth_outage_for_retired" if provider == "twilio" else "auth_outage_for_revoked", on)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_old_credential_still_valid_after_retirement_fails_the_run_and_claims_no_revocation(
        provider_world: ProviderWorld, provider: str) -> None:
    old = provider_world.in_env(provider)
    break_revocation(provider_world, provider)
    run = provider_world.cli("rotate", provider, *REVOKE_WAIT)
    assert run.returncode != 0
    failed = run.failed_step()
    assert failed.text == STEPS[provider]["retire"], failed.step
    assert "not revoked: still accepted" in (failed.error or ""), failed.error
    record = retirement(run, provider)
    assert record["revoked"] is False and record["retired"] is None, record
    assert provider_world.provider(provider).check(old).accepted  # the provider still takes it: nothing claimed
    assert log_rows(provider_world, provider) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_temporary_auth_failure_is_never_counted_as_revoked_and_the_rerun_asks_again(
        provider_world: ProviderWorld, provider: str) -> None:
    """After the promotion / revocation the provider answers the old credential only with a temporary failure
    (Twilio 503/20500, Meta code 2 is_transient): undecided, so the step fails and nothing is logged. Once the
    provider answers again, the same command asks again, gets the definitive refusal and finishes."""
    old = provider_world.in_env(provider)
    auth_outage_for_the_old(provider_world, provider, True)
    run = provider_world.cli("rotate", provider, *REVOKE_WAIT)
    failed = run.failed_step()
    assert failed.text == STEPS[provider]["retire"], failed.step
    assert "no definitive answer (undecided)" in (failed.error or ""), failed.error
    assert retirement(run, provider)["revoked"] is False
    assert log_rows(provider_world, provider) == 0
    auth_outage_for_the_old(provider_world, provider, False)
    rerun = provider_world.cli("rotate", provider, *REVOKE_WAIT)
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert_rotated(provider_world, provider, old, rows=1)


def test_a_lost_create_answer_at_twilio_is_reconciled_and_exactly_one_new_token_remains(
        provider_world: ProviderWorld) -> None:
    twilio, old = provider_world.standins.twilio, provider_world.in_env("twilio")
    twilio.faults.drop_answer_next(1, match="/AuthTokens/Secondary")
    run = provider_world.cli("rotate", "twilio")
    assert run.returncode == 0, run.output[-3000:]
    new = provider_world.in_env("twilio")
    assert twilio.valid_tokens() == {new.reveal()}  # the old one promoted away, no secondary left, no orphan
    [reconciled] = [e for e in journal(run, "twilio") if "reconciled by" in e]
    assert reconciled["secondary token"] == new.fingerprint and str(reconciled["outcome"]).startswith("adopted")
    assert_rotated(provider_world, "twilio", old, rows=1)
    assert not leaked(run.output, old, new)


def test_a_lost_mint_answer_at_meta_is_never_minted_again_and_the_step_names_the_token_left_behind(
        provider_world: ProviderWorld) -> None:
    """Meta mints the token, the answer is lost. Meta shows a token only in that answer and publishes no read of a
    system user's tokens, so nothing can find it: no second mint, nothing changed, the step says where to revoke it
    and the evidence records the lost answer."""
    graph, before = provider_world.standins.graph, provider_world.env_file.read_bytes()
    tokens_before = set(graph.tokens)
    graph.faults.drop_answer_next(1, match="/access_tokens")
    run = provider_world.cli("rotate", "whatsapp")
    failed = run.failed_step()
    assert failed.text == STEPS["whatsapp"]["create"], failed.step
    assert "not minted again" in (failed.error or "") and "System users" in (failed.error or ""), failed.error
    mints = [r for r in graph.requests if r[1].endswith("/access_tokens")]
    assert len(mints) == 1 and len(graph.tokens - tokens_before) == 1  # exactly one new token, the unseen one
    [lost] = [e for e in journal(run, "whatsapp") if "reconciled by" in e]
    assert "not minted again" in str(lost["outcome"])
    unchanged(provider_world, "whatsapp", before)


def test_a_lost_answer_to_the_test_sms_is_found_in_twilios_message_list_and_one_sms_goes_out(
        provider_world: ProviderWorld) -> None:
    twilio, old = provider_world.standins.twilio, provider_world.in_env("twilio")
    twilio.faults.drop_answer_next(1, match="/Messages.json")
    run = provider_world.cli("rotate", "twilio")
    assert run.returncode == 0, run.output[-3000:]
    assert len(twilio.messages) == 1 and len(twilio.delivered_to(twilio.messages[0]["to"])) == 1  # type: ignore[arg-type]
    [found] = [e for e in journal(run, "twilio") if "reconciled by" in e]
    assert found["outcome"] == f"found {twilio.messages[0]['sid']}: adopted, not sent again"
    assert_rotated(provider_world, "twilio", old, rows=1)


def test_a_lost_answer_to_the_test_whatsapp_message_sends_no_second_one(provider_world: ProviderWorld) -> None:
    """The Cloud API keeps no list of sent messages: the step stops rather than risk a duplicate; one message."""
    graph = provider_world.standins.graph
    graph.faults.drop_answer_next(1, match="/messages")
    run = provider_world.cli("rotate", "whatsapp")
    failed = run.failed_step()
    assert failed.text == STEPS["whatsapp"]["send"], failed.step
    assert "it was not sent again" in (failed.error or ""), failed.error
    assert len(graph.messages) == 1
    assert log_rows(provider_world, "whatsapp") == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_429_with_retry_after_2_is_waited_for_and_the_wait_recorded(provider_world: ProviderWorld,
                                                                    provider: str) -> None:
    old = provider_world.in_env(provider)
    faults = provider_world.standins.twilio.faults if provider == "twilio" else provider_world.standins.graph.faults
    if provider == "twilio":
        faults.throttle_next(1, retry_after="2", match="/AuthTokens/Secondary")  # 20429
    else:
        faults.throttle_next(1, retry_after="2", match="/access_tokens", code=80007)
    run = provider_world.cli("rotate", provider)
    assert run.returncode == 0, run.output[-3000:]
    [wait] = [e for e in journal(run, provider) if "waited s" in e]
    assert wait["because"] == "Retry-After: 2 s" and float(str(wait["waited s"])) >= 1.9, wait
    assert ("20429" if provider == "twilio" else "Graph code 80007") in str(wait["answer"])
    assert faults.injected == 1
    assert_rotated(provider_world, provider, old, rows=1)


@pytest.mark.parametrize(("provider", "setting"), [("twilio", "ADMIN_PHONE_NUMBER"), ("twilio", "TWILIO_PHONE_NUMBER"),
                                                   ("whatsapp", "WHATSAPP_SYSTEM_USER_ID")])
def test_a_missing_required_setting_is_refused_before_any_change(provider_world: ProviderWorld, provider: str,
                                                                 setting: str) -> None:
    env = provider_world.env_file
    env.write_text("".join(line for line in env.read_text().splitlines(keepends=True)
                           if not line.startswith(f"{setting}=")))
    before = env.read_bytes()
    run = provider_world.cli("rotate", provider)
    failed = run.failed_step()
    assert failed.text == BACKGROUND[provider], failed.step
    assert f"{setting}: set it to" in (failed.error or "") and "nothing was changed" in (failed.error or "")
    unchanged(provider_world, provider, before)
    changes = [r for s in (provider_world.standins.twilio, provider_world.standins.graph) for r in s.requests
               if r[0] != "GET"]
    assert changes == [], changes  # nothing created, revoked or sent at the provider (the app's checks only read)
    assert Secret(provider_world.originals[provider].reveal()) == provider_world.in_env(provider)


def test_a_retry_after_longer_than_the_configured_maximum_ends_the_step_saying_so(
        provider_world: ProviderWorld) -> None:
    """`--max-retry-wait 1`: Twilio asks for 30 s; the create step stops at once, before anything changed."""
    twilio, before = provider_world.standins.twilio, provider_world.env_file.read_bytes()
    twilio.faults.throttle_next(1, retry_after="30", match="/AuthTokens/Secondary")
    run = provider_world.cli("rotate", "twilio", "--max-retry-wait", "1")
    failed = run.failed_step()
    assert failed.text == STEPS["twilio"]["create"], failed.step
    assert "asked to wait 30 s (Retry-After: 30 s)" in (failed.error or "") and "rerun later" in (failed.error or "")
    [gave_up] = [e for e in journal(run, "twilio") if "gave up" in e]
    assert gave_up["asked to wait s"] == 30.0, gave_up
    assert twilio.secondary is None
    unchanged(provider_world, "twilio", before)


def test_a_wrong_app_secret_is_refused_by_meta_and_the_rerun_uses_the_corrected_one(
        provider_world: ProviderWorld) -> None:
    """The operator's input to a WhatsApp rotation is the app secret (the mint's appsecret_proof). Meta refuses a
    wrong one (400, code 100): nothing changes and the step says which setting to correct; the rerun, after the
    operator corrected .env, uses the corrected secret and finishes."""
    env, graph, old = provider_world.env_file, provider_world.standins.graph, provider_world.in_env("whatsapp")
    right = f"WHATSAPP_APP_SECRET={graph.app_secret}"
    assert right in env.read_text()
    env.write_text(env.read_text().replace(right, "WHATSAPP_APP_SECRET=" + "0" * 32))
    before, tokens = env.read_bytes(), set(graph.tokens)
    run = provider_world.cli("rotate", "whatsapp")
    failed = run.failed_step()
    assert failed.text == STEPS["whatsapp"]["create"], failed.step
    assert "Invalid appsecret_proof" in (failed.error or "") and "correct it in .env" in (failed.error or "")
    assert graph.tokens == tokens  # nothing minted
    unchanged(provider_world, "whatsapp", before)
    env.write_text(env.read_text().replace("WHATSAPP_APP_SECRET=" + "0" * 32, right))
    rerun = provider_world.cli("rotate", "whatsapp")
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert len(graph.tokens - tokens) == 1  # one mint, with the corrected secret's proof
    assert_rotated(provider_world, "whatsapp", old, rows=1)
    assert not leaked(run.output + rerun.output, Secret(graph.app_secret), old)
