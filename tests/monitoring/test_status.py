"""rotation.status: boundary semantics (pure) and reading the rotation log (real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psycopg
import pytest

from rotation.monitoring import status
from tests.monitoring.conftest import NOW, RotationLog

DAY = dt.timedelta(days=1)
SEC = dt.timedelta(seconds=1)
RUNBOOK = status.Schedule(90, 7)


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
def test_boundaries(age: dt.timedelta, days_left: int, state: str) -> None:
    s = status.evaluate("twilio_token", NOW - age, RUNBOOK, NOW)
    assert (s.days_until_rotation, s.state) == (days_left, state)
    assert s.rotation_due_at == NOW - age + 90 * DAY
    # the documented equivalences
    assert s.is_expired == (NOW >= s.rotation_due_at) == (s.days_until_rotation <= 0)
    assert s.is_rotation_due == (not s.is_expired and s.days_until_rotation <= 7)


def test_never_rotated_counts_as_expired() -> None:
    s = status.evaluate("smtp_password", None, RUNBOOK, NOW)
    assert s.never_rotated and s.is_expired and not s.is_rotation_due
    assert (s.last_rotated_at, s.rotation_due_at, s.days_until_rotation, s.state) == (None, None, None,
                                                                                        "never_rotated")
    assert s.alert_line().startswith("CRITICAL: smtp_password credentials have EXPIRED!")
    assert status.exit_code([s]) == status.EXIT_EXPIRED


def test_alert_lines_are_the_runbooks() -> None:
    due = status.evaluate("whatsapp_token", NOW - 85 * DAY, RUNBOOK, NOW)
    expired = status.evaluate("twilio_token", NOW - 95 * DAY, RUNBOOK, NOW)
    current = status.evaluate("db_encryption_key", NOW - 1 * DAY, RUNBOOK, NOW)
    assert status.alert_lines([current, due, expired]) == [
        "WARNING: whatsapp_token credentials rotation due in 5 days",
        "CRITICAL: twilio_token credentials have EXPIRED!",
    ]
    assert [status.exit_code(x) for x in ([current], [current, due], [due, expired])] == [0, 1, 2]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        status.evaluate("twilio_token", NOW.replace(tzinfo=None), RUNBOOK, NOW)


def test_schedule_defaults_are_the_runbooks_table() -> None:
    types = ("db_encryption_key", "whatsapp_token", "twilio_token", "smtp_password")
    assert dict(status.DEFAULT_SCHEDULE) == {t: status.Schedule(90, 7) for t in types}


def test_schedule_file_overrides_and_extends(tmp_path: Path) -> None:
    f = tmp_path / "schedule.yaml"
    f.write_text("schedule:\n  db_encryption_key: {interval_days: 30, warning_days: 5}\n"
                 "  smtp_password: {interval_days: 180}\n  api_signing_key: {interval_days: 365}\n")
    got = status.load_schedule(f)
    assert got["db_encryption_key"] == status.Schedule(30, 5)
    assert got["smtp_password"] == status.Schedule(180, 7)
    assert got["twilio_token"] == status.Schedule(90, 7)
    assert got["api_signing_key"] == status.Schedule(365, 7)
    j = tmp_path / "schedule.json"
    j.write_text(json.dumps({"schedule": {"twilio_token": {"warning_days": 14}}}))
    assert status.load_schedule(j)["twilio_token"] == status.Schedule(90, 14)


@pytest.mark.parametrize("text", ["schedule:\n  twilio_token: {interval_days: 0}\n",
                                  "schedule:\n  twilio_token: {interval_days: 10, warning_days: 10}\n",
                                  "schedule:\n  twilio_token: {interval: 10}\n",
                                  "schedule: [1, 2]\n"])
def test_bad_schedule_is_refused(tmp_path: Path, text: str) -> None:
    f = tmp_path / "schedule.yaml"
    f.write_text(text)
    with pytest.raises(status.ScheduleError):
        status.load_schedule(f)


def test_latest_row_per_type_from_postgres(rotation_log: RotationLog, monitoring_dsn: str) -> None:
    rotation_log.rotated("db_encryption_key", NOW - 200 * DAY)
    rotation_log.rotated("db_encryption_key", NOW - 10 * DAY)        # the latest one wins
    rotation_log.rotated("db_encryption_key", NOW - 120 * DAY)
    rotation_log.rotated("whatsapp_token", NOW - 86 * DAY)
    rotation_log.rotated("twilio_token", NOW - 95 * DAY)
    rotation_log.rotated("twilio_token", NOW + 5 * DAY)              # after the clock: not yet a rotation
    rotation_log.rotated("smtp_password", None)                      # NULL rotated_at is no rotation
    rotation_log.rotated("legacy_token", NOW)                        # not in the schedule: ignored
    with psycopg.connect(monitoring_dsn) as conn:
        got = status.rotation_status(conn, clock=lambda: NOW)
    assert list(got) == ["db_encryption_key", "whatsapp_token", "twilio_token", "smtp_password"]
    assert {k: (v.state, v.days_until_rotation) for k, v in got.items()} == {
        "db_encryption_key": ("current", 80), "whatsapp_token": ("due", 4),
        "twilio_token": ("expired", -5), "smtp_password": ("never_rotated", None)}
    assert got["db_encryption_key"].last_rotated_at == NOW - 10 * DAY


def test_status_survives_restarts_unlike_the_apps(rotation_log: RotationLog, monitoring_dsn: str) -> None:
    """The app's check starts every clock at process start; ours reads the log: a new process sees 'due'."""
    rotation_log.all_rotated(NOW - 88 * DAY)
    for _ in range(2):  # two independent connections, as two processes would
        with psycopg.connect(monitoring_dsn) as conn:
            got = status.rotation_status(conn, clock=lambda: NOW)
        assert {s.state for s in got.values()} == {"due"}


def test_custom_schedule_changes_the_verdict(rotation_log: RotationLog, monitoring_dsn: str) -> None:
    rotation_log.all_rotated(NOW - 40 * DAY)
    schedule = {**status.DEFAULT_SCHEDULE, "db_encryption_key": status.Schedule(30, 5)}
    with psycopg.connect(monitoring_dsn) as conn:
        got = status.rotation_status(conn, schedule, clock=lambda: NOW)
    assert got["db_encryption_key"].state == "expired"
    assert got["twilio_token"].state == "current"
