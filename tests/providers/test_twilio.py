"""The Twilio adapter with the real twilio SDK over loopback against the Twilio stand-in: Twilio's answers where the
rotation's recovery depends on them (promote without a secondary: 404/20404; a secondary someone else left), and a
test SMS judged by its final status, polled within a bounded wait."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import logging
import re

import pytest
import requests

from rotation.core import progress
from rotation.core.secret import Secret
from rotation.providers.base import (
    CredentialCheck,
    CredentialStillAccepted,
    DeliveryWait,
    ExistingCredential,
    ProviderError,
    ProviderUnavailable,
    retry_after_s,
)
from rotation.providers.twilio import TwilioProvider
from staging.twilio_standin import AUTHENTICATE, Lifecycle, TwilioStandIn, new_token
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


def test_promote_without_a_secondary_gets_twilios_404_20404(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    response = requests.post(f"{twilio_api.base_url}/v1/AuthTokens/Promote", timeout=5,
                             auth=(twilio_api.account_sid, twilio_api.primary))
    assert response.status_code == 404 and response.json() == {
        "code": 20404, "message": "The requested resource /AuthTokens/Promote was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}
    old = Secret(twilio_api.primary)  # nothing was promoted: the reconciliation must not call that a lost answer
    with pytest.raises(ProviderError) as caught:
        twilio.retire_old(old, old)
    assert (caught.value.status, caught.value.code) == (404, 20404) and twilio.check(old).accepted


def test_promote_whose_answer_was_lost_is_recognised_on_retry(twilio: TwilioProvider,
                                                               twilio_api: TwilioStandIn) -> None:
    old = Secret(twilio_api.primary)
    new = twilio.issue(old)
    twilio_api.faults.lose_answer_next(1, 1.0, match="Promote")  # promoted at Twilio, the client times out
    twilio.retire_old(old, new)
    promotes = [r for r in twilio_api.requests if r[1] == "/v1/AuthTokens/Promote"]
    assert promotes == [("POST", "/v1/AuthTokens/Promote", 200), ("POST", "/v1/AuthTokens/Promote", 404)]
    assert Secret(twilio_api.primary) == new and not twilio.check(old).accepted


def test_a_secondary_someone_else_left_is_refused_and_kept(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    """Twilio keeps one secondary token; one created before this rotation shows in the create answer's date."""
    current = Secret(twilio_api.primary)
    theirs = twilio_api.plant_secondary(dt.datetime.now(dt.UTC) - dt.timedelta(hours=3))
    with pytest.raises(ExistingCredential) as caught:
        twilio.issue(current)
    assert caught.value.existing == Secret(theirs) and "created" in caught.value.found
    assert twilio_api.secondary == theirs and not leaked(str(caught.value), theirs)  # nothing changed
    assert twilio.delete_secondary(current)  # what --replace-secondary does before creating its own
    mine = twilio.issue(current)
    assert mine != Secret(theirs) and not twilio.check(Secret(theirs)).accepted


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


def test_delivered_after_three_polls_passes_with_the_status_history(twilio: TwilioProvider,
                                                                    twilio_api: TwilioStandIn) -> None:
    twilio_api.lifecycle = Lifecycle.delivered(step_s=0.3)  # queued, sending at 0.3 s, sent at 0.6, delivered at 0.9
    paced = dataclasses.replace(twilio, settings=dataclasses.replace(twilio.settings,
                                                                     delivery=DeliveryWait(5.0, 0.2)))
    token = Secret(twilio_api.primary)
    delivery = paced.send_test_message(token, "rotation test")
    assert delivery.recipient == ADMIN_NUMBER and delivery.message_id.startswith("SM") and delivery.status == "queued"
    report = paced.delivery_report(token, delivery)
    assert (report.verdict, report.status, report.error_code) == ("delivered", "delivered", None)
    seen = [h["status"] for h in report.history]
    assert seen[0] == "queued" and seen[-1] == "delivered" and len(seen) >= 3, report.history
    assert seen == [s for s in ("queued", "sending", "sent", "delivered") if s in seen]  # in lifecycle order
    polls = int(report.detail.split("after ")[1].split(" poll")[0])
    assert polls >= 4 and report.as_evidence()["status history"] == list(report.history)
    assert [m["sid"] for m in twilio_api.delivered_to(ADMIN_NUMBER)] == [delivery.message_id]


def test_the_delivery_poll_shows_its_polls_and_the_wait_left_then_its_total(twilio: TwilioProvider,
                                                                          twilio_api: TwilioStandIn) -> None:
    """Polling is a long step too: the operator sees polls done of the most the wait allows (its ETA: the wait's end at
    the latest) while the message is on its way, then the total; the lines name no message id or credential."""
    twilio_api.lifecycle = Lifecycle.delivered(step_s=0.9)  # delivered at 2.7 s
    paced = dataclasses.replace(twilio, settings=dataclasses.replace(twilio.settings,
                                                                     delivery=DeliveryWait(10.0, 0.5)))
    token, lines = Secret(twilio_api.primary), list[str]()
    with progress.installed(progress.Paced(lines.append, every_s=1.0, min_gap_s=0.5)):
        sent = paced.send_test_message(token, "rotation test")
        report = paced.delivery_report(token, sent)
    assert report.verdict == "delivered"
    what = "waiting for Twilio's final status of the test SMS: "
    assert lines and all(line.startswith(what) for line in lines), lines
    assert re.fullmatch(r"\d+/21 polls \(\d+%\), [\d.]+ polls/s, ETA [\d.]+s", lines[0].removeprefix(what)), lines
    assert re.fullmatch(r"\d+ polls in [\d.]+s, [\d.]+ polls/s", lines[-1].removeprefix(what)), lines
    assert not any(sent.message_id in line or leaked(line, twilio_api.primary) for line in lines), lines


@pytest.mark.parametrize(("lifecycle", "status", "code", "says"), [
    (Lifecycle.stuck("queued"), "queued", None, "still queued after the 0.3 s wait"),
    (Lifecycle.ending("sent", 30007), "sent", 30007, "30007 (message filtered by the carrier)"),
    (Lifecycle.ending("undelivered", 30003), "undelivered", 30003, "30003 (unreachable destination handset)"),
    (Lifecycle.ending("failed", 30008), "failed", 30008, "30008 (unknown error)"),
    (Lifecycle.stuck("sent"), "sent", None, "no delivery receipt came"),
], ids=["queued-past-the-wait", "sent-with-30007", "undelivered-30003", "failed-30008", "sent-without-receipt"])
def test_anything_but_delivered_fails_with_the_code_and_its_meaning(
        twilio: TwilioProvider, twilio_api: TwilioStandIn, lifecycle: Lifecycle, status: str, code: int | None,
        says: str) -> None:
    twilio_api.lifecycle = lifecycle
    short = dataclasses.replace(twilio, settings=dataclasses.replace(twilio.settings,
                                                                     delivery=DeliveryWait(0.3, 0.05)))
    token = Secret(twilio_api.primary)
    report = short.delivery_report(token, short.send_test_message(token, "rotation test"))
    assert (report.verdict, report.status, report.error_code) == ("failed", status, code), report.detail
    assert says in report.detail and report.history[-1]["status"] == status


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
    undecided = twilio.check(primary)  # an outage proves nothing about the token
    assert undecided.answer is CredentialCheck.UNDECIDED and not undecided.accepted
    assert "no answer within 0.5s" in undecided.detail and "gave up after 4 attempts" in undecided.detail


# --- issue 22: only 401/20003 decides; lost answers reconciled, never blindly resent; Retry-After honoured ---------
def test_only_401_with_code_20003_proves_a_token_refused(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    primary = Secret(twilio_api.primary)
    assert twilio.check(Secret(new_token())).answer is CredentialCheck.REFUSED  # 401 / 20003
    twilio_api.faults.fail_next(1, 403, code=20003, match="/Accounts/")  # 20003, but at 403 (a Service's first minute)
    at_403 = twilio.check(primary)
    twilio_api.faults.fail_next(1, 401, code=20005, match="/Accounts/")  # 401, another code
    other_code = twilio.check(primary)
    twilio_api.faults.fail_forever(503, match="/Accounts/")
    outage = twilio.check(primary)
    for result in (at_403, other_code, outage):
        assert result.answer is CredentialCheck.UNDECIDED and "no definitive answer" in result.detail, result
    with pytest.raises(ProviderError, match="no definitive answer"):
        twilio.expect_rejected(primary)  # an undecided answer is never taken for a refusal


def test_a_lost_create_answer_is_reconciled_and_leaves_exactly_one_secondary(twilio: TwilioProvider,
                                                                             twilio_api: TwilioStandIn) -> None:
    """Twilio creates the secondary token, then the connection drops with no answer. The reconciling create answers
    with that same token (created after this rotation's first request): adopted, and the journal says so."""
    primary = Secret(twilio_api.primary)
    twilio_api.faults.drop_answer_next(1, match="/AuthTokens/Secondary")
    token = twilio.issue(primary)
    assert token == Secret(twilio_api.secondary or "")
    assert twilio_api.valid_tokens() == {primary.reveal(), token.reveal()}  # exactly one new credential
    entries = twilio.journal.take()
    [reconciled] = [e for e in entries if "reconciled by" in e]
    assert reconciled["secondary token"] == token.fingerprint and str(reconciled["outcome"]).startswith("adopted")
    assert not leaked(str(entries), primary, token)


def test_a_lost_test_sms_is_found_by_its_reference_and_not_sent_again(twilio: TwilioProvider,
                                                                     twilio_api: TwilioStandIn) -> None:
    primary = Secret(twilio_api.primary)
    twilio_api.faults.drop_answer_next(1, match="/Messages.json")
    delivery = twilio.send_test_message(primary, "rotation test")
    assert [m["sid"] for m in twilio_api.messages] == [delivery.message_id]  # one message, the lost one
    assert twilio.delivery_report(primary, delivery).verdict == "delivered"
    [found] = [e for e in twilio.journal.take() if "reconciled by" in e]
    assert found["outcome"] == f"found {delivery.message_id}: adopted, not sent again"


def test_a_send_that_never_reached_twilio_is_sent_once_more(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    """The send stalls past the client's timeout and Twilio drops it: not in the message list, so sent once more."""
    primary = Secret(twilio_api.primary)
    twilio_api.faults.hang_next(1, 1.0, match="/Messages.json")
    delivery = twilio.send_test_message(primary, "rotation test")
    assert [m["sid"] for m in twilio_api.messages] == [delivery.message_id]
    [looked] = [e for e in twilio.journal.take() if "reconciled by" in e]
    assert looked["outcome"] == "not found among the account's messages: sent once more"


def test_429_with_retry_after_is_waited_for_and_journaled(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    twilio_api.faults.throttle_next(1, retry_after="2", match="/Accounts/")
    assert twilio.check(Secret(twilio_api.primary)).accepted
    [wait] = twilio.journal.take()
    assert wait["because"] == "Retry-After: 2 s" and float(str(wait["waited s"])) >= 1.9, wait
    assert wait["answer"] == "HTTP 429 (Twilio code 20429)"
    assert twilio_api.faults.injected == 1  # the 429, answered by the fault; then the one request Twilio served
    assert [status for _, path, status in twilio_api.requests if "/Accounts/" in path] == [200]


def test_a_retry_after_beyond_the_maximum_wait_gives_up_saying_so(twilio: TwilioProvider,
                                                                 twilio_api: TwilioStandIn) -> None:
    patient = dataclasses.replace(twilio, settings=dataclasses.replace(
        twilio.settings, policy=dataclasses.replace(twilio.settings.policy, max_wait_s=1.0)))
    twilio_api.faults.throttle_next(1, retry_after="30", match="/Secondary")
    with pytest.raises(ProviderUnavailable, match=r"asked to wait 30 s \(Retry-After: 30 s\).*may wait"):
        patient.issue(Secret(twilio_api.primary))
    assert twilio_api.secondary is None


def test_retry_after_is_read_as_seconds_or_an_http_date(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    """RFC 9110 section 10.2.3: delay-seconds or an HTTP-date; a date in the past is no wait, nonsense is ignored."""
    now = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)
    assert retry_after_s("2") == 2.0
    assert retry_after_s("Mon, 07 Dec 2026 03:00:30 GMT", now) == 30.0
    assert retry_after_s("Mon, 07 Dec 2026 02:59:00 GMT", now) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None
    when = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3), usegmt=True)
    twilio_api.faults.throttle_next(1, retry_after=when, match="/Accounts/")
    assert twilio.check(Secret(twilio_api.primary)).accepted
    [wait] = twilio.journal.take()
    assert str(wait["because"]).startswith("Retry-After: ") and float(str(wait["waited s"])) >= 1.0, wait
