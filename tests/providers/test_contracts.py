"""Contract tests: every request the adapters make to a stand-in and every answer the stand-in gives, as the suite
relies on them, validated with openapi-core against the provider's API description (Twilio: its own OpenAPI files,
obtained from the npm registry and sha256-checked; Graph: staging/contracts/graph_cloud_api.json). Answers that no
description covers (Twilio's error bodies) must be listed with their source in staging/contracts/undescribed.json and
docs/provider-rotation.md. The check is shown to fail when a stand-in renames a field or sends RFC 2822 dates again."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import requests

from rotation.core.secret import Secret
from rotation.providers.twilio import TwilioProvider
from rotation.providers.whatsapp import WhatsAppProvider
from staging.contracts import Contract as Described
from staging.contracts import ContractSourceUnavailable, Exchange, graph_spec, only_paths, twilio_spec, undescribed
from staging.graph_standin import GraphStandIn
from staging.http_standin import Reply
from staging.twilio_standin import Lifecycle, TwilioStandIn, rfc2822_date, twilio_standin
from tests.harness import PROJECT

API_PATHS = ("/2010-04-01/Accounts/{Sid}.json", "/2010-04-01/Accounts/{AccountSid}/Messages.json",
             "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json")


@functools.cache
def twilio_contracts() -> tuple[Described, Described]:
    try:
        accounts, api = twilio_spec("accounts_v1"), twilio_spec("api_v2010")
    except ContractSourceUnavailable as exc:
        pytest.fail(f"Twilio's API descriptions are unavailable: {exc}", pytrace=False)
    return (Described.of(accounts, "https://accounts.twilio.com"),
            Described.of(only_paths(api, API_PATHS), "https://api.twilio.com"))


def twilio_violations(exchanges: Iterable[Exchange]) -> list[str]:
    accounts, api = twilio_contracts()
    return [v for e in exchanges for v in (accounts if e.path.startswith("/v1/") else api).violations(e)]


def as_template(path: str) -> str:
    """/2010-04-01/Accounts/AC.../Messages/SM....json -> the description's path template."""
    path = re.sub(r"/Accounts/AC[0-9a-f]{32}\.json$", "/Accounts/{Sid}.json", path)
    path = re.sub(r"/Accounts/AC[0-9a-f]{32}/", "/Accounts/{AccountSid}/", path)
    return re.sub(r"/Messages/SM[0-9a-f]{32}\.json$", "/Messages/{Sid}.json", path)


def drive_twilio(twilio: TwilioProvider, api: TwilioStandIn) -> None:
    """What a rotation does at Twilio, and what its recovery meets: the answers the suite relies on."""
    primary = Secret(api.primary)
    assert twilio.check(primary).accepted
    new = twilio.issue(primary)
    assert twilio.check(new).accepted
    for lifecycle in (Lifecycle.delivered(), Lifecycle.ending("undelivered", 30003), Lifecycle.ending("sent", 30007)):
        api.lifecycle = lifecycle
        twilio.delivery_report(new, twilio.send_test_message(new, "contract test"))
    twilio.retire_old(primary, new)
    assert not twilio.check(primary).accepted  # 401 / 20003
    assert not twilio.delete_secondary(new)  # 404 / 20404: none left
    promote = requests.post(f"{api.base_url}/v1/AuthTokens/Promote", auth=(api.account_sid, new.reveal()), timeout=5)
    assert promote.status_code == 404


def test_every_twilio_stand_in_answer_the_suite_relies_on_matches_twilios_description(
        twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    drive_twilio(twilio, twilio_api)
    exchanges = [Exchange(**dataclasses.asdict(e)) for e in twilio_api.exchanges]
    described = [e for e in exchanges if 200 <= e.status < 300]
    used = {(e.method, as_template(e.path), e.status) for e in described}
    assert used >= {("GET", "/2010-04-01/Accounts/{Sid}.json", 200), ("POST", "/v1/AuthTokens/Secondary", 201),
                    ("POST", "/v1/AuthTokens/Promote", 200),
                    ("POST", "/2010-04-01/Accounts/{AccountSid}/Messages.json", 201),
                    ("GET", "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json", 200)}, used
    assert {str(e.body.get("status")) for e in described if e.body and "Messages/SM" in e.path} >= {
        "delivered", "undelivered", "sent"}
    assert twilio_violations(described) == []
    listed = undescribed()["twilio"]
    for e in (e for e in exchanges if not 200 <= e.status < 300):
        code = e.body.get("code") if e.body else None
        assert any((c["method"], c["path"], c["status"], c["code"]) == (e.method, as_template(e.path), e.status, code)
                   for c in listed), f"{e.method} {as_template(e.path)} {e.status}/{code} is in no description and " \
                                     "not listed in staging/contracts/undescribed.json"


def test_the_delete_of_a_secondary_matches_too(twilio: TwilioProvider, twilio_api: TwilioStandIn) -> None:
    primary = Secret(twilio_api.primary)
    twilio.issue(primary)
    assert twilio.delete_secondary(primary)
    [deleted] = [e for e in twilio_api.exchanges if e.method == "DELETE"]
    assert deleted.status == 204 and twilio_violations([Exchange(**dataclasses.asdict(deleted))]) == []


def test_without_npm_the_contract_source_fails_with_a_clear_message(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATION_CONTRACT_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on it
    with pytest.raises(ContractSourceUnavailable, match=r"npm is not installed: .*npm pack @twilio/cli-core@9\.0\.0"):
        twilio_spec("accounts_v1")


def test_every_undescribed_answer_is_documented_with_its_source() -> None:
    docs = (PROJECT / "docs" / "provider-rotation.md").read_text()
    for case in undescribed()["twilio"]:
        assert case["source"] and f"{case['status']}/{case['code']}" in docs and case["path"] in docs, case


class Drifted(TwilioStandIn):
    """A stand-in that drifted: a field renamed in the account, RFC 2822 dates back in the accounts v1 API."""

    def _account(self, sid: str) -> Reply:
        reply = super()._account(sid)
        body = dict(reply.body or {})
        body["name"] = body.pop("friendly_name")
        return Reply(reply.status, body)

    def _create_secondary(self) -> Reply:
        reply = super()._create_secondary()
        return Reply(reply.status, {**(reply.body or {}), "date_created": rfc2822_date(),
                                    "date_updated": rfc2822_date()})


@pytest.fixture
def drifted() -> Iterator[TwilioStandIn]:
    with twilio_standin(Drifted()) as standin:
        yield standin


def test_the_contract_check_fails_on_a_renamed_field_and_on_rfc_2822_dates(drifted: TwilioStandIn) -> None:
    auth = (drifted.account_sid, drifted.primary)
    requests.get(f"{drifted.base_url}/2010-04-01/Accounts/{drifted.account_sid}.json", auth=auth, timeout=5)
    requests.post(f"{drifted.base_url}/v1/AuthTokens/Secondary", auth=auth, timeout=5)
    found = twilio_violations(Exchange(**dataclasses.asdict(e)) for e in drifted.exchanges)
    assert len(found) == 2, found
    assert "Additional properties are not allowed ('name' was unexpected)" in found[0], found
    assert "date_created: format 'date-time'" in found[1] and "date_updated: format 'date-time'" in found[1], found


@functools.cache
def graph_contract() -> Described:
    return Described.of(graph_spec(), "https://graph.facebook.com")


def test_every_graph_stand_in_answer_the_suite_relies_on_matches_the_graph_description(
        whatsapp: WhatsAppProvider, graph_api: GraphStandIn) -> None:
    old = Secret(graph_api.mint())
    assert whatsapp.check(old).accepted and whatsapp.introspect(old)["is_valid"] is True
    new = whatsapp.issue(old)
    whatsapp.send_test_message(new, "contract test")
    whatsapp.retire_old(old, new)
    assert not whatsapp.check(old).accepted  # 401 / 190: an error body the description covers
    exchanges = [Exchange(**dataclasses.asdict(e)) for e in graph_api.exchanges]
    assert {e.status for e in exchanges} == {200, 401} and len(exchanges) == 6
    assert [v for e in exchanges for v in graph_contract().violations(e)] == []


def test_the_graph_contract_check_fails_on_a_renamed_field(graph_api: GraphStandIn) -> None:
    answer = {"id": graph_api.phone_number_id, "display_phone_number": "+1 555-010-0199", "name": "CRM",
              "quality_rating": "GREEN"}
    renamed = Exchange("GET", f"/{graph_api.version}/{graph_api.phone_number_id}", {}, {}, "", 200, answer)
    [found] = graph_contract().violations(renamed)
    assert "'verified_name' is a required property" in found and "'name' was unexpected" in found


def test_the_date_formats_are_the_apis_own() -> None:
    """ISO 8601 in accounts v1, RFC 2822 in the 2010 API, as the stand-in writes them."""
    from staging.twilio_standin import iso_date

    when = dt.datetime(2015, 7, 31, 4, 0, tzinfo=dt.UTC)
    assert (iso_date(when), rfc2822_date(when)) == ("2015-07-31T04:00:00Z", "Fri, 31 Jul 2015 04:00:00 +0000")
