"""rotation.monitoring.status: boundary semantics (pure), reading the rotation log (real PostgreSQL), the schedule
from the credential registry, and the app trigger's names through the registry's aliases."""

from __future__ import annotations

import dataclasses
import datetime as dt

import psycopg
import pytest

from rotation.core.config import Config, Credential
from rotation.core.database import connect
from rotation.core.keys import generate_key
from rotation.core.rotation_log import log_rotation
from rotation.monitoring import status
from tests.monitoring.conftest import CONFIG, NOW, RotationLog, credential

DAY = dt.timedelta(days=1)
SEC = dt.timedelta(seconds=1)


def with_interval(config: Config, name: str, interval_days: int, warning_days: int) -> Config:
    """The configuration with one credential's interval and warning period changed (as a rotation.toml edit does)."""
    changed = dataclasses.replace(config.credential(name), interval=dt.timedelta(days=interval_days),
                                  warning=dt.timedelta(days=warning_days))
    return dataclasses.replace(config, credentials=tuple(changed if c.type == changed.type else c
                                                         for c in config.credentials))


def test_the_built_in_schedule_is_the_runbooks_table() -> None:
    assert {(c.interval.days, c.warning.days) for c in CONFIG.credentials} == {(90, 7)}


@pytest.mark.parametrize(("age", "days_left", "state"), [
    (0 * DAY, 90, "current"),
    (82 * DAY, 8, "current"),
    (82 * DAY + SEC, 8, "current"),        # rounded up: still 8 whole days left
    (83 * DAY - SEC, 8, "current"),
    (83 * DAY, 7, "due"),                  # the warning period starts exactly 7 days before the due instant
    (84 * DAY, 6, "due"),
    (89 * DAY, 1, "due"),
    (90 * DAY - SEC, 1, "due"),
    (90 * DAY, 0, "expired"),              # expired at the due instant
    (90 * DAY + SEC, 0, "expired"),
    (91 * DAY, -1, "expired"),
    (400 * DAY, -310, "expired"),
])
@pytest.mark.parametrize("cred", CONFIG.credentials, ids=lambda c: c.type)
def test_boundaries(cred: Credential, age: dt.timedelta, days_left: int, state: str) -> None:
    s = status.evaluate(cred, NOW - age, NOW)
    assert (s.days_until_rotation, s.state) == (days_left, state)
    assert s.rotation_due_at == NOW - age + 90 * DAY
    # the documented equivalences
    assert s.is_expired == (NOW >= s.rotation_due_at) == (s.days_until_rotation <= 0)
    assert s.is_rotation_due == (not s.is_expired and s.days_until_rotation <= 7)


def test_never_rotated_counts_as_expired() -> None:
    smtp = credential("smtp")
    s = status.evaluate(smtp, None, NOW)
    assert s.never_rotated and s.is_expired and not s.is_rotation_due
    assert (s.last_rotated_at, s.rotation_due_at, s.days_until_rotation, s.state) == (None, None, None,
                                                                                        "never_rotated")
    assert s.alert_line() == (f"CRITICAL: {smtp.type} credentials have EXPIRED! "
                              "(never rotated: no row in security_credential_rotations)")
    assert status.exit_code([s]) == status.EXIT_EXPIRED


def test_alert_lines_are_the_runbooks() -> None:
    whatsapp, twilio = credential("whatsapp"), credential("twilio")
    due = status.evaluate(whatsapp, NOW - 85 * DAY, NOW)
    expired = status.evaluate(twilio, NOW - 95 * DAY, NOW)
    current = status.evaluate(credential("database"), NOW - 1 * DAY, NOW)
    assert status.alert_lines([current, due, expired]) == [
        f"WARNING: {whatsapp.type} credentials rotation due in 5 days",
        f"CRITICAL: {twilio.type} credentials have EXPIRED!",
    ]
    assert [status.exit_code(x) for x in ([current], [current, due], [due, expired])] == [0, 1, 2]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        status.evaluate(credential("twilio"), NOW.replace(tzinfo=None), NOW)


def test_the_registry_interval_changes_the_verdict() -> None:
    database = credential("database")
    config = with_interval(CONFIG, "database", 30, 5)
    assert status.evaluate(config.credential("database"), NOW - 40 * DAY, NOW).state == "expired"
    assert status.evaluate(config.credential("database"), NOW - 26 * DAY, NOW).state == "due"
    assert status.evaluate(database, NOW - 40 * DAY, NOW).state == "current"


def test_latest_row_per_credential_from_postgres(rotation_log: RotationLog, monitoring_dsn: str) -> None:
    rotation_log.rotated("database", NOW - 200 * DAY)
    rotation_log.rotated("database", NOW - 10 * DAY)        # the latest one wins
    rotation_log.rotated("database", NOW - 120 * DAY)
    rotation_log.rotated("whatsapp", NOW - 86 * DAY)
    rotation_log.rotated("twilio", NOW - 95 * DAY)
    rotation_log.rotated("twilio", NOW + 5 * DAY)            # after the clock: not yet a rotation
    rotation_log.rotated("smtp", NOW - 1 * DAY, logged_as="legacy_smtp_token")  # a name no credential has: ignored
    with psycopg.connect(monitoring_dsn) as conn:
        got = status.rotation_status(conn, CONFIG, clock=lambda: NOW)
    assert list(got) == list(CONFIG.types)
    expected = {credential("database").type: ("current", 80), credential("whatsapp").type: ("due", 4),
                credential("twilio").type: ("expired", -5), credential("smtp").type: ("never_rotated", None)}
    assert {k: (v.state, v.days_until_rotation) for k, v in got.items()} == expected
    assert got[credential("database").type].last_rotated_at == NOW - 10 * DAY


def test_null_rotated_at_is_no_rotation(rotation_log: RotationLog, monitoring_dsn: str) -> None:
    rotation_log.rotated("smtp", NOW - 3 * DAY)
    with psycopg.connect(monitoring_dsn, autocommit=True) as conn:
        conn.execute("UPDATE security_credential_rotations SET rotated_at = NULL")  # the schema allows it
        got = status.rotation_status(conn, CONFIG, clock=lambda: NOW)
    assert got[credential("smtp").type].never_rotated


def test_rows_the_app_trigger_logs_count_through_the_aliases(rotation_log: RotationLog, monitoring_dsn: str) -> None:
    """The app's trigger logs a provider rotation under its service name ('twilio', 'whatsapp', 'smtp')."""
    rotation_log.all_rotated(NOW - 95 * DAY)
    for c in CONFIG.credentials:
        for alias in c.log_aliases:
            rotation_log.rotated(c.type, NOW - 10 * DAY, logged_as=alias)
    with psycopg.connect(monitoring_dsn) as conn:
        got = status.rotation_status(conn, CONFIG, clock=lambda: NOW)
    for c in CONFIG.credentials:
        expected = ("current", 80, c.log_aliases[0]) if c.log_aliases else ("expired", -5, c.type)
        assert (got[c.type].state, got[c.type].days_until_rotation, got[c.type].logged_as) == expected
    without_aliases = dataclasses.replace(CONFIG, credentials=tuple(dataclasses.replace(c, log_aliases=())
                                                                    for c in CONFIG.credentials))
    with psycopg.connect(monitoring_dsn) as conn:
        got = status.rotation_status(conn, without_aliases, clock=lambda: NOW)
    assert {s.state for s in got.values()} == {"expired"}


def test_the_logged_next_due_and_the_status_cannot_disagree(rotation_log: RotationLog, monitoring_dsn: str) -> None:
    """`log_rotation` and the status take the interval from the same registry: under the built-in one and under an
    edited one, the row's next_rotation_due is the status's rotation_due_at."""
    for config in (CONFIG, with_interval(CONFIG, "twilio", 45, 5)):
        with psycopg.connect(monitoring_dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE security_credential_rotations")
        with connect(monitoring_dsn) as conn:
            records = [log_rotation(conn, c, rotated_by="test", previous=generate_key(), reason="test",
                                    at=NOW - 20 * DAY) for c in config.credentials]
            got = status.rotation_status(conn, config, clock=lambda: NOW)
        for record in records:
            assert got[record.credential_type].rotation_due_at == record.next_rotation_due


def test_status_survives_restarts_unlike_the_apps(rotation_log: RotationLog, monitoring_dsn: str) -> None:
    """The app's check starts every clock at process start; ours reads the log: a new process sees 'due'."""
    rotation_log.all_rotated(NOW - 88 * DAY)
    for _ in range(2):  # two independent connections, as two processes would
        with psycopg.connect(monitoring_dsn) as conn:
            got = status.rotation_status(conn, CONFIG, clock=lambda: NOW)
        assert {s.state for s in got.values()} == {"due"}
