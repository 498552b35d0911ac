"""The WhatsApp adapter with requests over loopback against the Graph API stand-in."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import requests

from rotation.core.secret import Secret
from rotation.providers.base import CredentialStillAccepted, ProviderError, ProviderUnavailable
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
    with pytest.raises(ProviderUnavailable, match="no answer within"):
        whatsapp.check(token)
