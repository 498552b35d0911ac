"""The WhatsApp adapter with requests over loopback against the Graph API stand-in."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import requests

from rotation.core.secret import Secret
from rotation.providers.base import (
    AnswerLost,
    CredentialCheck,
    CredentialStillAccepted,
    ProviderError,
    ProviderUnavailable,
)
from rotation.providers.whatsapp import WhatsAppProvider, appsecret_proof
from staging.graph_standin import GraphStandIn, new_token
from tests.providers.conftest import ADMIN_NUMBER, leaked


def test_current_token_passes_the_phone_number_fetch(whatsapp: WhatsAppProvider, graph_api: GraphStandIn) -> None:
    token = Secret(graph_api.mint())
    result = whatsapp.check(token)
    assert result.accepted and result.status == 200 and graph_api.display_phone_number in result.detail
    assert not leaked(str(result), token)


def test_unknown_token_gets_401_code_190(whatsapp: WhatsAppProvider) -> None:
    result = whatsapp.check(Secret(new_token()))
    assert (result.accepted, result.status, result.code) == (False, 401, 190)


def test_stand_in_answers_the_oauth_exception_body(graph_api: GraphStandIn) -> None:
    response = requests.get(f"{graph_api.base_url}/{graph_api.version}/{graph_api.phone_number_id}",
                            headers={"Authorization": "Bearer EAAnope"}, timeout=5)
    error = response.json()["error"]
    assert response.status_code == 401 and error["type"] == "OAuthException" and error["code"] == 190
    assert error["fbtrace_id"]


def test_issue_test_revoke_kills_the_old_token(whatsapp: WhatsAppProvider, graph_api: GraphStandIn) -> None:
    old = Secret(graph_api.mint())
    new = whatsapp.issue(old)
    assert new != old and whatsapp.check(new).accepted and whatsapp.check(old).accepted
    info = whatsapp.introspect(new)
    assert info["is_valid"] is True and info["type"] == "SYSTEM_USER" and info["expires_at"] == 0
    assert "whatsapp_business_messaging" in info["scopes"]
    whatsapp.retire_old(old, new)
    rejected = whatsapp.expect_rejected(old)
    assert (rejected.status, rejected.code) == (401, 190) and "invalidated" in rejected.detail
    assert whatsapp.check(new).accepted and whatsapp.introspect(old)["is_valid"] is False


def test_issue_needs_a_correct_appsecret_proof(whatsapp: WhatsAppProvider, graph_api: GraphStandIn) -> None:
    wrong_secret = replace(whatsapp.settings, app_secret=Secret("f" * 32))
    with pytest.raises(ProviderError) as caught:
        WhatsAppProvider(wrong_secret).issue(Secret(graph_api.mint()))
    assert caught.value.code == 100 and "appsecret_proof" in str(caught.value)
    assert not leaked(str(caught.value), "f" * 32)


def test_appsecret_proof_is_hmac_sha256_of_the_token() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert appsecret_proof(Secret("Jefe"), Secret("what do ya want for nothing?")) == expected


def test_negative_control_revoked_token_kept_valid_is_caught(whatsapp: WhatsAppProvider,
                                                             graph_api: GraphStandIn) -> None:
    graph_api.keep_revoked_tokens_valid = True
    old = Secret(graph_api.mint())
    new = whatsapp.issue(old)
    whatsapp.retire_old(old, new)
    with pytest.raises(CredentialStillAccepted) as caught:
        whatsapp.expect_rejected(old)
    assert not leaked(str(caught.value), old, new)


def test_revoke_whose_answer_was_lost_is_recognised_on_retry(whatsapp: WhatsAppProvider,
                                                             graph_api: GraphStandIn) -> None:
    old = Secret(graph_api.mint())
    new = whatsapp.issue(old)
    graph_api.faults.lose_answer_next(1, 1.0, match="oauth/revoke")  # revoked, but the answer never arrives
    whatsapp.retire_old(old, new)
    revokes = [r for r in graph_api.requests if r[1] == f"/{graph_api.version}/oauth/revoke"]
    assert len(revokes) == 2  # the first was carried out, its answer lost; the retry is harmless
    assert not whatsapp.check(old).accepted


def test_test_message_reaches_the_admin_number(whatsapp: WhatsAppProvider, graph_api: GraphStandIn) -> None:
    token = Secret(graph_api.mint())
    delivery = whatsapp.send_test_message(token, "rotation test")
    assert delivery.message_id.startswith("wamid.") and delivery.recipient == ADMIN_NUMBER
    assert [m["id"] for m in graph_api.delivered_to(ADMIN_NUMBER)] == [delivery.message_id]
    assert whatsapp.delivery_report(token, delivery).verdict == "accepted"  # Meta tells only the app's webhook


def test_503_three_times_then_success(whatsapp: WhatsAppProvider, graph_api: GraphStandIn) -> None:
    token = Secret(graph_api.mint())
    graph_api.faults.fail_next(3)
    assert whatsapp.check(token).accepted and graph_api.faults.injected == 3


def test_503_forever_fails_cleanly_without_a_secret(whatsapp: WhatsAppProvider, graph_api: GraphStandIn,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    old = Secret(graph_api.mint())
    new = whatsapp.issue(old)
    graph_api.faults.fail_forever()
    with pytest.raises(ProviderUnavailable) as caught:
        whatsapp.retire_old(old, new)
    text = str(caught.value) + repr(caught.value) + caplog.text
    assert "gave up after 4 attempts" in text
    assert not leaked(text, old, new, graph_api.app_secret)
    graph_api.faults.clear()
    assert whatsapp.check(old).accepted  # nothing was revoked


def test_a_timeout_is_retried_like_a_503(whatsapp: WhatsAppProvider, graph_api: GraphStandIn) -> None:
    token = Secret(graph_api.mint())
    graph_api.faults.hang_next(1, 1.0)
    assert whatsapp.check(token).accepted
    graph_api.faults.hang_next(10, 0.8)
    undecided = whatsapp.check(token)  # an outage proves nothing about the token
    assert undecided.answer is CredentialCheck.UNDECIDED and not undecided.accepted
    assert "no answer within" in undecided.detail


# --- issue 22: only 401/190 decides; lost answers never resent; throttling retried as Meta asks ----------------------
def test_only_401_with_code_190_proves_a_token_refused(whatsapp: WhatsAppProvider, graph_api: GraphStandIn) -> None:
    token = Secret(graph_api.mint())
    assert whatsapp.check(Secret(new_token())).answer is CredentialCheck.REFUSED  # 401 / 190
    graph_api.faults.fail_next(1, 400, code=190, match=graph_api.phone_number_id)  # 190, but not at 401
    at_400 = whatsapp.check(token)
    graph_api.faults.fail_next(1, 401, code=102, match=graph_api.phone_number_id)  # 401, another code
    other_code = whatsapp.check(token)
    graph_api.faults.fail_forever(503, match=graph_api.phone_number_id)  # Meta's transient code 2, every retry
    outage = whatsapp.check(token)
    for result in (at_400, other_code, outage):
        assert result.answer is CredentialCheck.UNDECIDED and "no definitive answer" in result.detail, result
    with pytest.raises(ProviderError, match="no definitive answer"):
        whatsapp.expect_rejected(token)


def test_a_lost_mint_answer_is_never_minted_again_and_names_the_next_step(whatsapp: WhatsAppProvider,
                                                                          graph_api: GraphStandIn) -> None:
    """Meta mints the token, then the connection drops with no answer. Meta shows a token only in that answer and
    offers no read of a system user's tokens: the adapter does not mint again, and says where to revoke it."""
    old = Secret(graph_api.mint())
    graph_api.faults.drop_answer_next(1, match="/access_tokens")
    with pytest.raises(AnswerLost) as caught:
        whatsapp.issue(old)
    mints = [r for r in graph_api.requests if r[1].endswith("/access_tokens")]
    assert len(mints) == 1 and len(graph_api.tokens) == 2  # the old one and the one whose answer was lost
    assert "not minted again" in str(caught.value) and "then rerun" in str(caught.value)
    [lost] = [e for e in whatsapp.journal.take() if "reconciled by" in e]
    assert "not minted again" in str(lost["outcome"])
    assert not leaked(str(caught.value) + str(lost), old, *graph_api.tokens)


def test_a_lost_send_answer_is_not_sent_again(whatsapp: WhatsAppProvider, graph_api: GraphStandIn) -> None:
    token = Secret(graph_api.mint())
    graph_api.faults.drop_answer_next(1, match="/messages")
    with pytest.raises(AnswerLost, match="it was not sent again"):
        whatsapp.send_test_message(token, "rotation test")
    assert len(graph_api.messages) == 1  # one message delivered, none duplicated


def test_throttling_is_retried_after_meta_s_retry_after_and_journaled(whatsapp: WhatsAppProvider,
                                                                      graph_api: GraphStandIn) -> None:
    token = Secret(graph_api.mint())
    graph_api.faults.throttle_next(1, retry_after="2", match="/messages", code=130429)
    assert whatsapp.send_test_message(token, "rotation test").status == "accepted"
    [wait] = whatsapp.journal.take()
    assert wait["because"] == "Retry-After: 2 s" and float(str(wait["waited s"])) >= 1.9, wait
    assert len(graph_api.messages) == 1
    for code in (4, 17, 80007):  # Meta's other throttling codes, at 400 without a Retry-After: the backoff
        graph_api.faults.throttle_next(1, retry_after=None, status=400, code=code, match=graph_api.phone_number_id)
        assert whatsapp.check(token).accepted
        [backoff] = whatsapp.journal.take()
        assert backoff["because"] == "backoff" and f"Graph code {code}" in str(backoff["answer"])


def test_the_send_carries_recipient_type_and_the_stand_in_requires_it(whatsapp: WhatsAppProvider,
                                                                      graph_api: GraphStandIn) -> None:
    token = Secret(graph_api.mint())
    whatsapp.send_test_message(token, "rotation test")
    sent = graph_api.exchanges[-1].json or {}
    assert sent.get("recipient_type") == "individual"
    without = {k: v for k, v in sent.items() if k != "recipient_type"}
    answer = requests.post(f"{graph_api.base_url}/{graph_api.version}/{graph_api.phone_number_id}/messages",
                           json=without, headers={"Authorization": f"Bearer {token.reveal()}"}, timeout=5)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == 100
    assert "recipient_type is required" in answer.json()["error"]["message"]
