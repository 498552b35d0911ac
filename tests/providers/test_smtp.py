"""The SMTP adapter with smtplib over loopback against the aiosmtpd stand-in (STARTTLS required, AUTH required)."""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import replace

import pytest

from rotation.core.secret import Secret
from rotation.providers.base import CredentialStillAccepted, ProviderError, ProviderUnavailable
from rotation.providers.smtp import OperatorConsole, SmtpProvider, SmtpSettings
from staging.smtp_standin import SmtpStandIn
from tests.providers.conftest import ADMIN_EMAIL, leaked


@pytest.fixture
def current(smtp_server: SmtpStandIn) -> Secret:
    password = Secret("current-SMTP-password-0123456789")
    smtp_server.add_password(password)
    return password


def test_login_over_verified_starttls(smtp: SmtpProvider, current: Secret) -> None:
    result = smtp.check(current)
    assert result.accepted and result.status == 235
    assert "TLSv1." in result.detail and "certificate verified" in result.detail


def test_wrong_password_gets_535_5_7_8(smtp: SmtpProvider, current: Secret) -> None:
    result = smtp.check(Secret("not-the-password-0123456789"))
    assert (result.accepted, result.status, result.code) == (False, 535, "5.7.8")


def test_the_server_demands_starttls_before_auth(smtp_server: SmtpStandIn, current: Secret) -> None:
    with smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=5) as client:
        client.ehlo()
        assert client.docmd("AUTH", "PLAIN AGN1cnJlbnQ=") == (530, b"5.7.0 Must issue a STARTTLS command first")
        assert client.docmd("MAIL", "FROM:<a@example.com>")[0] == 530


def test_the_protocol_as_rfc_3207_and_2034_want_it(smtp_server: SmtpStandIn, current: Secret) -> None:
    """With smtplib over the wire: ENHANCEDSTATUSCODES advertised (and every later reply carries one), a second
    STARTTLS inside TLS gets Postfix's 554 5.5.1 and the session goes on, and any AUTH word is answered, `AUTH attempts` included
    (a handler attribute named auth_* used to be taken for a mechanism and crash the session)."""
    context = ssl.create_default_context(cafile=str(smtp_server.ca_file))
    with smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("enhancedstatuscodes") and client.has_extn("starttls")
        client.starttls(context=context)
        client.ehlo()
        assert client.has_extn("enhancedstatuscodes") and not client.has_extn("starttls")
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]  # no ATTEMPTS mechanism
        assert client.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")
        for word in ("attempts", "ATTEMPTS", "CRAM-MD5", "XOAUTH2", "logins"):
            assert client.docmd("AUTH", word) == (504, b"5.5.4 Unrecognized authentication type"), word
        assert client.docmd("AUTH", "PLAIN !!!") == (501, b"5.5.2 Can't decode base64")
        assert client.noop() == (250, b"2.0.0 OK")
        client.login(smtp_server.username, current.reveal())  # the session survived all of it
        assert client.docmd("AUTH", "attempts") == (503, b"5.5.1 Already authenticated")
        assert client.docmd("RCPT", "TO:<admin@example.com>") == (503, b"5.5.1 Error: need MAIL command")
    assert smtp_server.logins == [(current.fingerprint, True)]


def test_an_unverifiable_certificate_is_refused(smtp: SmtpProvider, current: Secret) -> None:
    system_trust = replace(smtp, settings=replace(smtp.settings, ca_file=None))
    with pytest.raises(ProviderError, match="certificate failed verification"):
        system_trust.check(current)


def test_the_certificate_is_ec_p256_for_localhost(smtp_server: SmtpStandIn) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    assert smtp_server.ca_file is not None
    cert = x509.load_pem_x509_certificate(smtp_server.ca_file.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert (smtp_server.ca_file.parent / "smtp-key.pem").stat().st_mode & 0o777 == 0o600


def test_console_issues_a_new_password_and_revokes_the_old(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                           current: Secret) -> None:
    new = smtp.issue(current)
    assert new != current and smtp.check(new).accepted and smtp.check(current).accepted
    smtp.retire_old(current, new)
    rejected = smtp.expect_rejected(current)
    assert (rejected.status, rejected.code) == (535, "5.7.8")
    assert smtp.check(new).accepted


def test_negative_control_old_password_still_accepted_is_caught(smtp: SmtpProvider, current: Secret) -> None:
    new = smtp.issue(current)  # the operator forgot to revoke the old password at the provider
    with pytest.raises(CredentialStillAccepted) as caught:
        smtp.expect_rejected(current)
    assert not leaked(str(caught.value), current, new)


def test_password_changed_at_runtime_takes_effect_at_once(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                          current: Secret) -> None:
    replacement = Secret("replacement-password-0123456789")
    smtp_server.set_password(replacement)
    assert not smtp.check(current).accepted and smtp.check(replacement).accepted


def test_test_email_is_delivered_over_tls_after_auth(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                     current: Secret) -> None:
    delivery = smtp.send_test_message(current, "rotation test")
    [message] = smtp_server.delivered_to(ADMIN_EMAIL)
    assert message["tls"] and message["authenticated"] and delivery.message_id.encode() in message["data"]


def test_operator_console_takes_the_new_password_from_the_environment_or_a_prompt(smtp: SmtpProvider) -> None:
    from_env = OperatorConsole(environ={"SMTP_NEW_PASSWORD": " from-environment-0123456789 \n"})
    assert from_env.obtain() == Secret("from-environment-0123456789") and isinstance(from_env.obtain(), Secret)
    prompts: list[str] = []
    prompted = OperatorConsole(environ={}, prompt=lambda text: prompts.append(text) or "typed-at-prompt-0123456789")
    assert prompted.obtain() == Secret("typed-at-prompt-0123456789") and "not echoed" in prompts[0]
    with pytest.raises(ProviderError, match="at least 16"):
        replace(smtp, console=OperatorConsole(environ={"SMTP_NEW_PASSWORD": "short"})).issue(Secret("x" * 20))


def test_421_three_times_then_success(smtp: SmtpProvider, smtp_server: SmtpStandIn, current: Secret) -> None:
    smtp_server.faults.refuse_next(3)
    assert smtp.check(current).accepted and smtp_server.faults.injected == 3


def test_refused_forever_fails_cleanly_without_the_password(smtp: SmtpProvider, smtp_server: SmtpStandIn,
                                                            current: Secret, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    smtp_server.faults.refuse_forever()
    with pytest.raises(ProviderUnavailable) as caught:
        smtp.check(current)
    assert "gave up after 4 attempts" in str(caught.value) and "421" in str(caught.value)
    assert not leaked(str(caught.value) + caplog.text, current)


def test_a_timeout_is_retried_like_a_refusal(smtp: SmtpProvider, smtp_server: SmtpStandIn, current: Secret) -> None:
    smtp_server.faults.hang_next(1, 1.0)
    assert smtp.check(current).accepted
    smtp_server.faults.hang_next(10, 0.8)
    with pytest.raises(ProviderUnavailable, match="no answer within"):
        smtp.check(current)


def test_settings_from_env_default_to_port_587_and_the_system_trust_store() -> None:
    settings = SmtpSettings.from_env({"SMTP_HOST": "smtp.example.com", "SMTP_USERNAME": "crm@example.com"})
    assert (settings.port, settings.ca_file, settings.sender) == (587, None, "crm@example.com")
    context = SmtpProvider(settings, OperatorConsole(environ={})).tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
