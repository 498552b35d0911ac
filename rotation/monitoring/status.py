"""Rotation status per credential type, from `security_credential_rotations` and a schedule.

The CRM app's own `check_rotation_status()` starts every clock at process start and so never reports a
rotation due. This module reads the rotation log instead, which survives restarts.

Boundary semantics (all times timezone-aware; UTC in every output):

* ``last_rotated_at``: the latest ``rotated_at`` of that credential type at or before *now* (rows after
  *now*, which only an injected clock in the past can see, do not count; NULL ``rotated_at`` is not a
  rotation).
* ``rotation_due_at = last_rotated_at + interval`` (the schedule's interval; the row's ``next_rotation_due``
  is not used, so one schedule governs every row, whoever wrote it).
* ``days_until_rotation = ceil((rotation_due_at - now) / 1 day)``: whole days left, rounded *up*,
  negative once past.
  Rounding up makes the three predicates agree exactly:
  ``is_expired  <=>  now >= rotation_due_at  <=>  days_until_rotation <= 0`` and
  ``is_rotation_due  <=>  not is_expired and days_until_rotation <= warning_days
  <=>  rotation_due_at - warning <= now < rotation_due_at``,
  so the warning period starts exactly ``warning_days`` before the due instant, as the runbook's table says.
  With the runbook's 90/7 schedule: rotated 82 days ago -> 8 days left, current; 83 -> 7, due; 89 -> 1, due;
  90 -> 0, expired; 91 -> -1, expired. One second past 82 days -> still 8 (rounded up), current.
* A type never rotated (no row) is reported with ``never_rotated=True``, every date None, and counts as
  expired.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import psycopg

Clock = Callable[[], dt.datetime]

CREDENTIAL_TYPES: tuple[str, ...] = ("db_encryption_key", "whatsapp_token", "twilio_token", "smtp_password")
DAY = dt.timedelta(days=1)

EXIT_CURRENT = 0
EXIT_DUE = 1
EXIT_EXPIRED = 2


class ScheduleError(ValueError):
    """A schedule file or value is not usable."""


@dataclass(frozen=True)
class Schedule:
    """How often one credential type must be rotated, and how long before that the warning starts."""

    interval_days: int = 90
    warning_days: int = 7

    def __post_init__(self) -> None:
        if not (isinstance(self.interval_days, int) and isinstance(self.warning_days, int)):
            raise ScheduleError("interval_days and warning_days must be whole numbers of days")
        if self.interval_days <= 0:
            raise ScheduleError(f"interval_days must be positive, not {self.interval_days}")
        if not 0 <= self.warning_days < self.interval_days:
            raise ScheduleError(f"warning_days must be in [0, interval_days), not {self.warning_days}")


# The runbook's "Rotation Schedule" table.
DEFAULT_SCHEDULE: Mapping[str, Schedule] = MappingProxyType({t: Schedule(90, 7) for t in CREDENTIAL_TYPES})


@dataclass(frozen=True)
class RotationStatus:
    credential_type: str
    last_rotated_at: dt.datetime | None
    rotation_due_at: dt.datetime | None
    days_until_rotation: int | None
    is_rotation_due: bool
    is_expired: bool
    never_rotated: bool
    interval_days: int
    warning_days: int

    @property
    def state(self) -> str:
        if self.never_rotated:
            return "never_rotated"
        if self.is_expired:
            return "expired"
        return "due" if self.is_rotation_due else "current"

    def alert_line(self) -> str | None:
        """The runbook's cron alert line for this credential, or None when it is current."""
        if self.never_rotated:
            return (f"CRITICAL: {self.credential_type} credentials have EXPIRED! "
                    "(never rotated: no row in security_credential_rotations)")
        if self.is_expired:
            return f"CRITICAL: {self.credential_type} credentials have EXPIRED!"
        if self.is_rotation_due:
            return (f"WARNING: {self.credential_type} credentials rotation due in "
                    f"{self.days_until_rotation} days")
        return None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("last_rotated_at", "rotation_due_at"):
            value = out[key]
            out[key] = value.astimezone(dt.UTC).isoformat() if value else None
        out["state"] = self.state
        return out


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _require_aware(moment: dt.datetime, what: str) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return moment.astimezone(dt.UTC)


def days_until(due_at: dt.datetime, now: dt.datetime) -> int:
    """Whole days from now until due_at, rounded up (0 at the due instant, negative after it)."""
    remaining = due_at - now
    return math.ceil(remaining / DAY)


def evaluate(credential_type: str, last_rotated_at: dt.datetime | None, schedule: Schedule,
             now: dt.datetime) -> RotationStatus:
    """The status of one credential type at `now`, given when it was last rotated (None: never)."""
    now = _require_aware(now, "now")
    if last_rotated_at is None:
        return RotationStatus(credential_type, None, None, None, is_rotation_due=False, is_expired=True,
                              never_rotated=True, interval_days=schedule.interval_days,
                              warning_days=schedule.warning_days)
    last = _require_aware(last_rotated_at, "last_rotated_at")
    due_at = last + dt.timedelta(days=schedule.interval_days)
    left = days_until(due_at, now)
    expired = now >= due_at
    return RotationStatus(credential_type, last, due_at, left,
                          is_rotation_due=not expired and left <= schedule.warning_days,
                          is_expired=expired, never_rotated=False, interval_days=schedule.interval_days,
                          warning_days=schedule.warning_days)


LATEST_ROTATIONS_SQL = """
SELECT credential_type, max(rotated_at) AS last_rotated_at
FROM security_credential_rotations
WHERE credential_type = ANY(%(types)s) AND rotated_at <= %(now)s
GROUP BY credential_type
"""


def latest_rotations(conn: psycopg.Connection[Any], types: Iterable[str],
                     now: dt.datetime) -> dict[str, dt.datetime]:
    """The latest rotated_at per credential type at or before `now`, from the rotation log."""
    params = {"types": list(types), "now": _require_aware(now, "now")}
    rows = conn.execute(LATEST_ROTATIONS_SQL, params).fetchall()
    return {credential_type: last for credential_type, last in rows}


def rotation_status(conn: psycopg.Connection[Any], schedule: Mapping[str, Schedule] = DEFAULT_SCHEDULE,
                    clock: Clock = utc_now) -> dict[str, RotationStatus]:
    """Status of every credential type in the schedule (schedule order), as of clock()."""
    now = _require_aware(clock(), "clock()")
    latest = latest_rotations(conn, schedule, now)
    return {t: evaluate(t, latest.get(t), s, now) for t, s in schedule.items()}


def exit_code(statuses: Iterable[RotationStatus]) -> int:
    """0 when every credential is current, 1 when any is due, 2 when any is expired or never rotated."""
    code = EXIT_CURRENT
    for s in statuses:
        if s.is_expired:
            return EXIT_EXPIRED
        if s.is_rotation_due:
            code = EXIT_DUE
    return code


def alert_lines(statuses: Iterable[RotationStatus]) -> list[str]:
    return [line for s in statuses if (line := s.alert_line())]


def load_schedule(path: Path | None) -> dict[str, Schedule]:
    """The default schedule, overridden (and extendable) per credential type by a YAML or JSON file:

        schedule:
          db_encryption_key: {interval_days: 30, warning_days: 5}
          smtp_password: {interval_days: 180}
    """
    schedule = dict(DEFAULT_SCHEDULE)
    if path is None:
        return schedule
    data = _read_mapping(path)
    entries = data.get("schedule", data)
    if not isinstance(entries, dict):
        raise ScheduleError(f"{path}: 'schedule' must map credential types to settings")
    for credential_type, settings in entries.items():
        if not isinstance(settings, dict) or set(settings) - {"interval_days", "warning_days"}:
            raise ScheduleError(f"{path}: {credential_type} takes only interval_days and warning_days")
        base = schedule.get(credential_type, Schedule())
        schedule[str(credential_type)] = Schedule(settings.get("interval_days", base.interval_days),
                                                  settings.get("warning_days", base.warning_days))
    return schedule


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ScheduleError(f"cannot read schedule file {path}: {e.strerror}") from None
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ScheduleError(f"{path}: expected a mapping at the top level")
    return data
