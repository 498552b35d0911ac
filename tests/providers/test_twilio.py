"""The Twilio adapter with the real twilio SDK over loopback against the Twilio stand-in."""

from __future__ import annotations

import logging

import pytest

from rotation.core.secret import Secret
from rotation.providers.base import CredentialStillAccepted, ProviderError, ProviderUnavailable
from rotation.providers.twilio import TwilioProvider
from staging.twilio_standin import AUTHENTICATE, TwilioStandIn, new_token
from tests.providers.conftest import ADMIN_NUMBER, leaked


def test_current_token_passes_the_read_only_account_fetch(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    result = twilio.check(Secret(twilio_api.primary))
    assert result.accepted and result.status == 200
    assert twilio_api.account_sid in result.detail and not leaked(str(result), twilio_api.primary)
    assert twilio_api.requests[-1] == ("GET", f"/2010-04-01/Accounts/{twilio_api.account_sid}.json", 200)


def test_unknown_token_gets_twilios_401_20003(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    result = twilio.check(Secret(new_token()))
    assert (result.accepted, result.status, result.code) == (False, 401, 20003) and "Authenticate" in result.detail


def test_stand_in_answers_the_real_401_body(twilio_api: TwilioStandIn) -> None:
    import requests

    response = requests.get(f"{twilio_api.base_url}/2010-04-01/Accounts/{twilio_api.account_sid}.json",
                            auth=(twilio_api.account_sid, "wrong"), timeout=5)
    assert response.status_code == 401 and response.json() == AUTHENTICATE


def test_secondary_then_promote_kills_the_old_primary(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    old = Secret(twilio_api.primary)
    new = twilio.issue(old)
    assert new == Secret(twilio_api.secondary or "") and new != old
    assert twilio.check(new).accepted and twilio.check(old).accepted  # both work until promotion
    twilio.retire_old(old, new)
    assert Secret(twilio_api.primary) == new and twilio_api.secondary is None
    rejected = twilio.expect_rejected(old)
    assert (rejected.status, rejected.code) == (401, 20003)
    assert twilio.check(new).accepted


def test_negative_control_old_token_kept_valid_is_caught(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    twilio_api.keep_old_tokens_valid = True
    old = Secret(twilio_api.primary)
    new = twilio.issue(old)
    twilio.retire_old(old, new)
    with pytest.raises(CredentialStillAccepted) as caught:
        twilio.expect_rejected(old)
    assert not leaked(str(caught.value), old, new)


def test_promote_whose_answer_was_lost_is_recognised_on_retry(twilio: TwilioProvider,
                                                               twilio_api: TwilioStandIn) -> None:
    old = Secret(twilio_api.primary)
    new = twilio.issue(old)
    twilio_api.faults.lose_answer_next(1, 1.0, match="Promote")  # promoted at Twilio, the client times out
    twilio.retire_old(old, new)
    assert ("POST", "/v1/AuthTokens/Promote", 400) in twilio_api.requests  # the retry found nothing to promote
    assert Secret(twilio_api.primary) == new and not twilio.check(old).accepted


def test_discarding_a_pending_secondary(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    current = Secret(twilio_api.primary)
    pending = twilio.issue(current)
    assert twilio.delete_secondary(current) is True
    assert not twilio.check(pending).accepted
    assert twilio.delete_secondary(current) is False
    twilio.discard_pending(current, pending)  # nothing left to discard: fine


def test_suppress_email_notification_is_accepted_and_ignored(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    client = twilio.client(Secret(twilio_api.primary))
    created = client.accounts.v1.secondary_auth_token().create(suppress_email_notification=True)
    assert created.secondary_auth_token == twilio_api.secondary
    assert client.accounts.v1.secondary_auth_token().delete(suppress_email_notification=True)


def test_test_sms_reaches_the_admin_number(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    token = Secret(twilio_api.primary)
    delivery = twilio.send_test_message(token, "rotation test")
    assert delivery.recipient == ADMIN_NUMBER and delivery.message_id.startswith("SM")
    assert [m["sid"] for m in twilio_api.delivered_to(ADMIN_NUMBER)] == [delivery.message_id]
    report = twilio.delivery_report(token, delivery)
    assert (report.verdict, report.status, report.error_code) == ("delivered", "delivered", None)


def test_an_undelivered_sms_is_reported_as_failed(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    twilio_api.drop_messages = True
    token = Secret(twilio_api.primary)
    report = twilio.delivery_report(token, twilio.send_test_message(token, "rotation test"))
    assert (report.verdict, report.status, report.error_code) == ("failed", "undelivered", 30005)


def test_sms_with_a_dead_token_fails_with_the_provider_code(twilio: TwilioProvider) -> None:
    token = Secret(new_token())
    with pytest.raises(ProviderError) as caught:
        twilio.send_test_message(token, "rotation test")
    assert (caught.value.status, caught.value.code) == (401, 20003) and not leaked(str(caught.value), token)


def test_503_three_times_then_success(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    twilio_api.faults.fail_next(3)
    assert twilio.check(Secret(twilio_api.primary)).accepted
    assert twilio_api.faults.injected == 3


def test_503_forever_fails_cleanly_without_the_token(twilio: TwilioProvider, twilio_api: TwilioStandIn,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    twilio_api.faults.fail_forever()
    with pytest.raises(ProviderUnavailable) as caught:
        twilio.issue(Secret(twilio_api.primary))
    message = str(caught.value)
    assert "gave up after 4 attempts" in message and "HTTP 503" in message
    assert not leaked(message + caplog.text, twilio_api.primary)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_timeout_is_retried_like_a_503(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    primary = Secret(twilio_api.primary)
    twilio_api.faults.hang_next(1, 1.0)
    assert twilio.check(primary).accepted
    twilio_api.faults.hang_next(1, 1.0, match="Secondary")  # the stalled create is dropped once its client gave up
    token = twilio.issue(primary)
    assert token == Secret(twilio_api.secondary or "")
    twilio_api.faults.hang_next(10, 0.8)
    with pytest.raises(ProviderUnavailable, match="no answer within 0.5s"):
        twilio.check(primary)
