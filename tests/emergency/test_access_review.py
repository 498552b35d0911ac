"""The access review against a real PostgreSQL: a clean seeded history is clean, and each kind of anomaly is flagged
with its reason (each test is also the negative control of the clean case)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import psycopg
import pytest

from rotation.core.config import default_config
from rotation.emergency import access_review
from rotation.emergency.access_review import PolicyError, ReviewPolicy, ReviewTables, like_pattern, load_policy
from staging.seed_activity import ActivityShape, seed_activity, staging_policy

POLICY = staging_policy()
TABLES = ReviewTables.from_config(default_config().access_review)


def review(conn: psycopg.Connection, policy: ReviewPolicy, **kwargs: object) -> access_review.ReviewResult:
    """The review over the built-in configuration's tables."""
    return access_review.review(conn, policy, tables=TABLES, **kwargs)  # type: ignore[arg-type]


def access(conn: psycopg.Connection, at: dt.datetime, *, who: str = "support.agent1@eventplanning.example.com",
           ip: str | None = "10.20.1.2", kind: str = "read", client: str = "client-00000001") -> None:
    conn.execute("INSERT INTO crm_data_access_log (client_id, access_type, accessed_by, access_timestamp, ip_address,"
                 " purpose) VALUES (%s, %s, %s, %s, %s, 'test')", (client, kind, who, at, ip))


def message(conn: psycopg.Connection, at: dt.datetime, *, metadata: dict | None = None,
            template: str | None = "event_reminder", status: str = "sent") -> str:
    meta = {"origin": "crm-communication-engine"} if metadata is None else metadata
    return conn.execute("INSERT INTO crm_communications (client_id, message_type, channel, status, body, template_name,"
                        " metadata, created_at) VALUES ('client-00000002', 'reminder', 'sms', %s, 'secret body text',"
                        " %s, %s, %s) RETURNING communication_id::text",
                        (status, template, json.dumps(meta), at)).fetchone()[0]


def test_clean_history_is_clean_and_counted(crm, crm_dsn, now) -> None:
    written = seed_activity(crm_dsn, clients=100, now=now)
    result = review(crm, POLICY, end=now)
    in_window = crm.execute("SELECT count(*) FROM crm_data_access_log WHERE access_timestamp > %s",
                            (now - dt.timedelta(hours=24),)).fetchone()[0]
    assert result.clean, result.lines()
    assert result.access_rows_reviewed == in_window > 0
    assert 0 < result.communications_reviewed < written["crm_communications"]
    assert "0 access rows, 0 communications and 0 volume anomalies flagged" in result.summary()


def test_unknown_accessor_from_unknown_ip_is_flagged_with_both_reasons(crm, now) -> None:
    access(crm, now - dt.timedelta(hours=1), who="mallory", ip="203.0.113.66")
    access(crm, now - dt.timedelta(hours=2))
    result = review(crm, POLICY, end=now)
    assert result.access_rows_reviewed == 2 and result.access_flagged_total == 1
    (row,) = result.flagged
    assert row.fields["accessed_by"] == "mallory" and row.fields["ip"] == "203.0.113.66"
    assert row.reasons == ("accessor 'mallory' is not in the allowlist",
                           "IP 203.0.113.66 is outside the allowed networks")
    assert "mallory" in "\n".join(result.lines())


def test_exports_and_deletes_are_always_flagged(crm, now) -> None:
    access(crm, now - dt.timedelta(hours=3), kind="export")
    access(crm, now - dt.timedelta(hours=4), kind="delete")
    result = review(crm, POLICY, end=now)
    assert sorted(f.reasons for f in result.flagged) == [("delete access (always reviewed)",),
                                                          ("export access (always reviewed)",)]


def test_missing_ip_is_flagged_only_when_the_policy_says_so(crm, now) -> None:
    access(crm, now - dt.timedelta(hours=1), ip=None)
    assert review(crm, POLICY, end=now).clean
    strict = dataclasses.replace(POLICY, flag_missing_ip=True)
    assert review(crm, strict, end=now).flagged[0].reasons == ("no IP address recorded",)


def test_volume_far_above_the_baseline_is_flagged(crm, crm_dsn, now) -> None:
    seed_activity(crm_dsn, clients=100, now=now, shape=ActivityShape(accesses_per_day=60))
    crm.execute("INSERT INTO crm_data_access_log (client_id, access_type, accessed_by, access_timestamp, ip_address) "
                "SELECT format('client-%%s', i), 'read', 'analytics-batch', %s - i * interval '1 second', '10.20.9.9' "
                "FROM generate_series(1, 400) i", (now,))
    result = review(crm, POLICY, end=now)
    subjects = {(v.source, v.subject) for v in result.volume}
    assert ("crm_data_access_log", "analytics-batch") in subjects
    assert ("crm_data_access_log", "all") in subjects
    assert result.access_flagged_total == 0 and not result.clean


def test_volume_needs_a_minimum_before_it_is_flagged(crm, now) -> None:
    for i in range(5):  # no baseline at all, but only 5 rows
        access(crm, now - dt.timedelta(minutes=i + 1))
    assert review(crm, POLICY, end=now).volume == ()


def test_messages_the_app_did_not_originate_are_flagged(crm, now) -> None:
    at = now - dt.timedelta(hours=1)
    good = message(crm, at)
    no_marker = message(crm, at, metadata={})
    other = message(crm, at, metadata={"origin": "psql"})
    no_template = message(crm, at, template=None)
    odd_template = message(crm, at, template="bitcoin_offer")
    message(crm, at, metadata={}, status="pending")  # not sent: not reviewed
    result = review(crm, POLICY, end=now)
    reasons = {f.row_id: f.reasons for f in result.flagged}
    assert result.communications_reviewed == 5 and result.communications_flagged_total == 4
    assert good not in reasons
    assert reasons[no_marker] == ("not originated by the app: metadata.origin is missing",)
    assert reasons[other] == ("not originated by the app: metadata.origin is 'psql'",)
    assert reasons[no_template] == ("not originated by the app: no template",)
    assert reasons[odd_template] == ("not originated by the app: template 'bitcoin_offer' is not one of the app's "
                                     "templates",)
    assert "secret body text" not in json.dumps([f.as_evidence() for f in result.flagged]), "a body left the database"


def test_window_is_configurable(crm, now) -> None:
    access(crm, now - dt.timedelta(hours=30), who="mallory")
    assert review(crm, POLICY, end=now).access_rows_reviewed == 0
    wide = review(crm, dataclasses.replace(POLICY, window=dt.timedelta(hours=48)), end=now)
    assert wide.access_rows_reviewed == 1 and wide.access_flagged_total == 1


def test_listing_is_bounded_but_counts_are_complete(crm, now) -> None:
    for i in range(5):
        access(crm, now - dt.timedelta(minutes=i + 1), who=f"intruder{i}")
    result = review(crm, POLICY, end=now, limit=2)
    assert result.access_flagged_total == 5 and len(result.flagged) == 2
    assert "3 more flagged rows not listed" in "\n".join(result.lines())


def test_allowlist_globs_match_and_like_metacharacters_stay_literal(crm, now) -> None:
    policy = dataclasses.replace(POLICY, allowed_accessors=("support.*@eventplanning.example.com", "svc_100%"))
    access(crm, now - dt.timedelta(minutes=1), who="support.zed@eventplanning.example.com")
    access(crm, now - dt.timedelta(minutes=2), who="svc_100%")
    access(crm, now - dt.timedelta(minutes=3), who="svcX100abc")
    flagged = review(crm, policy, end=now).flagged
    assert [f.fields["accessed_by"] for f in flagged] == ["svcX100abc"]
    assert like_pattern("a_b%c*") == "a\\_b\\%c%"


def test_policy_file_is_validated(tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text("allowed_accessors: [crm-communication-engine]\nallowed_networks: [10.0.0.0/8]\n"
                    "window_hours: 6\nmin_volume: 10\n")
    policy = load_policy(good)
    assert policy.window == dt.timedelta(hours=6) and policy.min_volume == 10
    assert load_policy(good, window=dt.timedelta(hours=2)).window == dt.timedelta(hours=2)
    typo = tmp_path / "typo.yaml"
    typo.write_text("allowed_accesors: [x]\n")
    with pytest.raises(PolicyError, match="unknown review policy keys: allowed_accesors"):
        load_policy(typo)
    with pytest.raises(PolicyError, match="not a network"):
        ReviewPolicy(allowed_accessors=(), allowed_networks=("10.0.0.300/8",))
    assert access_review.SENT_STATUSES[0] == "sent"


def test_tables_and_columns_come_from_the_configuration(crm, now) -> None:
    """A deployment whose access log has other names: the review reads what the configuration names, quoted."""
    crm.execute('CREATE TABLE "Audit Trail" (entry bigserial PRIMARY KEY, who text, kind text, ts timestamptz, '
                "src inet, customer text, why text)")
    crm.execute('INSERT INTO "Audit Trail" (who, kind, ts, src, customer, why) VALUES '
                "('mallory', 'read', %s, '203.0.113.66', 'c-1', 'x')", (now - dt.timedelta(minutes=5),))
    section = dict(default_config().access_review)
    section["access_log"] = {"table": "Audit Trail", "id": "entry", "client": "customer", "access_type": "kind",
                             "accessed_by": "who", "at": "ts", "ip_address": "src", "purpose": "why"}
    tables = ReviewTables.from_config(section)
    result = access_review.review(crm, POLICY, tables=tables, end=now)
    assert result.access_rows_reviewed == 1 and result.flagged[0].source == "Audit Trail"
    assert '"Audit Trail"' in result.queries["access"] and "crm_data_access_log" not in result.queries["access"]
    assert access_review.independent_counts(crm, tables, result.window) == (1, 0)
    crm.execute('DROP TABLE "Audit Trail"')
    with pytest.raises(PolicyError, match=r"\[access_review.access_log\] lacks purpose"):
        ReviewTables.from_config({**section, "access_log": {k: v for k, v in section["access_log"].items()
                                                            if k != "purpose"}})
