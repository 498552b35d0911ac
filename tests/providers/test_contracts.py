"""Contract tests: every request the adapters make to a stand-in and every answer the stand-in gives, as the suite
relies on them, validated with openapi-core against the provider's API description (Twilio: its own OpenAPI files,
obtained from the npm registry and sha256-checked; Graph: Meta's published description, facebook/openapi
business-messaging-api_v23.0.yaml, vendored and sha256-checked, for the phone-number GET and the send, and
staging/contracts/graph_cloud_api.json for the three calls Meta describes nowhere). Answers that no
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

import staging.contracts as contracts
from rotation.core.secret import Secret
from rotation.providers.twilio import TwilioProvider
from rotation.providers.whatsapp import WhatsAppProvider
from staging.contracts import Contract as Described
from staging.contracts import (
    ContractSourceUnavailable,
    Exchange,
    graph_spec,
    meta_spec,
    only_paths,
    prepared_meta,
    twilio_spec,
    undescribed,
)
from staging.graph_standin import GraphStandIn, graph_standin
from staging.http_standin import Reply, Request
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
def graph_contracts() -> tuple[Described, Described]:
    """Meta's published description (the phone-number GET, the send) and ours (the three calls Meta describes not)."""
    try:
        meta = prepared_meta(meta_spec())
    except ContractSourceUnavailable as exc:
        pytest.fail(f"Meta's API description is unavailable: {exc}", pytrace=False)
    return Described.of(meta, "https://graph.facebook.com"), Described.of(graph_spec(), "https://graph.facebook.com")


def graph_violations(exchanges: Iterable[Exchange], phone_number_id: str) -> list[str]:
    meta, ours = graph_contracts()
    described_by_meta = re.compile(rf"^/v[0-9]+\.[0-9]+/{phone_number_id}(/messages)?$")
    return [v for e in exchanges for v in (meta if described_by_meta.match(e.path) else ours).violations(e)]


def graph_exchanges(api: GraphStandIn) -> list[Exchange]:
    return [Exchange(**dataclasses.asdict(e)) for e in api.exchanges]


def test_every_graph_stand_in_answer_the_suite_relies_on_matches_metas_description(
        whatsapp: WhatsAppProvider, graph_api: GraphStandIn) -> None:
    """The phone-number GET and the send against Meta's own description (facebook/openapi, sha256-checked), the
    other three calls against the description written here; the client's requests as well as the answers."""
    old = Secret(graph_api.mint())
    assert whatsapp.check(old).accepted and whatsapp.introspect(old)["is_valid"] is True
    new = whatsapp.issue(old)
    whatsapp.send_test_message(new, "contract test")
    whatsapp.retire_old(old, new)
    assert not whatsapp.check(old).accepted  # 401 / 190: an error body Meta's description covers
    exchanges = graph_exchanges(graph_api)
    assert {e.status for e in exchanges} == {200, 401} and len(exchanges) == 6
    by_meta = [e for e in exchanges if e.path.endswith(graph_api.phone_number_id) or e.path.endswith("/messages")]
    assert [(e.method, e.status) for e in by_meta] == [("GET", 200), ("POST", 200), ("GET", 401)]
    assert graph_violations(exchanges, graph_api.phone_number_id) == []


def test_the_contract_check_fails_on_a_send_without_a_required_field(whatsapp: WhatsAppProvider,
                                                                    graph_api: GraphStandIn) -> None:
    """A client that drops `recipient_type` (Meta's description requires it) fails the contract check."""
    token = Secret(graph_api.mint())
    whatsapp.send_test_message(token, "contract test")
    [sent] = [e for e in graph_exchanges(graph_api) if e.path.endswith("/messages")]
    assert graph_violations([sent], graph_api.phone_number_id) == []
    without = dataclasses.replace(sent, json={k: v for k, v in (sent.json or {}).items() if k != "recipient_type"})
    [found] = graph_violations([without], graph_api.phone_number_id)
    assert "request: (body): 'recipient_type' is a required property" in found, found


class DriftedGraph(GraphStandIn):
    """A Graph stand-in that drifted: its 401 error body lost `code`, its phone number renamed `verified_name`."""

    def _route(self, request: Request) -> Reply:
        reply = super()._route(request)
        body = dict(reply.body or {})
        if isinstance(body.get("error"), dict):
            body["error"] = {k: v for k, v in body["error"].items() if k != "code"}
        if "verified_name" in body:
            body["name"] = body.pop("verified_name")
        return Reply(reply.status, body, reply.headers)


@pytest.fixture
def drifted_graph() -> Iterator[GraphStandIn]:
    with graph_standin(DriftedGraph()) as standin:
        yield standin


def test_the_graph_contract_check_fails_on_a_missing_required_field_and_a_renamed_one(
        drifted_graph: GraphStandIn) -> None:
    token = drifted_graph.mint()
    url = f"{drifted_graph.base_url}/{drifted_graph.version}/{drifted_graph.phone_number_id}"
    for sent in (token, "EAAunknown"):
        requests.get(url, headers={"Authorization": f"Bearer {sent}"}, timeout=5)
    renamed, missing = graph_violations(graph_exchanges(drifted_graph), drifted_graph.phone_number_id)
    assert "200 answer: (body): Additional properties are not allowed ('name' was unexpected)" in renamed, renamed
    assert "401 answer: error: 'code' is a required property" in missing, missing


def test_metas_description_is_verified_against_its_recorded_sha256(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = contracts.sources()["graph"]["meta"]
    assert (recorded["repository"], recorded["path"]) == ("https://github.com/facebook/openapi",
                                                          "business-messaging-api_v23.0.yaml")
    assert re.fullmatch(r"[0-9a-f]{40}", recorded["commit"]) and recorded["commit"] in recorded["fetch"]
    assert contracts.sha256(contracts.HERE / recorded["file"]) == recorded["sha256"]
    for name in ("sources.json", recorded["file"]):
        (tmp_path / name).write_bytes((contracts.HERE / name).read_bytes())
    tampered = tmp_path / recorded["file"]
    tampered.write_text(tampered.read_text().replace("- recipient_type", "- recipient", 1))
    monkeypatch.setattr(contracts, "HERE", tmp_path)
    with pytest.raises(ContractSourceUnavailable, match="not the recorded c7148d5e"):
        contracts.meta_spec()


def test_the_docs_name_the_graph_calls_meta_does_not_describe() -> None:
    docs = (PROJECT / "docs" / "provider-rotation.md").read_text()
    for call in contracts.sources()["graph"]["undescribed_by_meta"]:
        assert f"`{call}`" in docs, call
    assert "business-messaging-api_v23.0.yaml" in docs and contracts.sources()["graph"]["meta"]["commit"] in docs


def test_the_date_formats_are_the_apis_own() -> None:
    """ISO 8601 in accounts v1, RFC 2822 in the 2010 API, as the stand-in writes them."""
    from staging.twilio_standin import iso_date

    when = dt.datetime(2015, 7, 31, 4, 0, tzinfo=dt.UTC)
    assert (iso_date(when), rfc2822_date(when)) == ("2015-07-31T04:00:00Z", "Fri, 31 Jul 2015 04:00:00 +0000")
