"""Rotation status per credential, from `security_credential_rotations` and the credential registry.

The CRM app's own `check_rotation_status()` starts every clock at process start and so never reports a
rotation due. This module reads the rotation log instead, which survives restarts. Each credential's interval and
warning period come from the deployment configuration (`rotation.core.config`), the same registry from which
`log_rotation` computes a row's `next_rotation_due`: there is no second schedule that could disagree with it.

Boundary semantics (all times timezone-aware; UTC in every output):

* ``last_rotated_at``: the latest ``rotated_at`` of that credential at or before *now*, under its type or any of its
  log aliases (the app's trigger logs provider rotations as 'twilio', 'whatsapp', 'smtp'). Rows after *now*, which
  only an injected clock in the past can see, do not count; NULL ``rotated_at`` is not a rotation.
* ``rotation_due_at = last_rotated_at + interval`` (the registry's interval; the row's ``next_rotation_due`` is not
  used, so one schedule governs every row, whoever wrote it).
* ``days_until_rotation = ceil((rotation_due_at - now) / 1 day)``: whole days left, rounded *up*,
  negative once past.
  Rounding up makes the three predicates agree exactly:
  ``is_expired  <=>  now >= rotation_due_at  <=>  days_until_rotation <= 0`` and
  ``is_rotation_due  <=>  not is_expired and days_until_rotation <= warning_days
  <=>  rotation_due_at - warning <= now < rotation_due_at``,
  so the warning period starts exactly ``warning_days`` before the due instant, as the runbook's table says.
  With the runbook's 90/7 schedule: rotated 82 days ago -> 8 days left, current; 83 -> 7, due; 89 -> 1, due;
  90 -> 0, expired; 91 -> -1, expired. One second past 82 days -> still 8 (rounded up), current.
* A credential never rotated (no row) is reported with ``never_rotated=True``, every date None, and counts as
  expired.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from rotation.core import escrow, retirement
from rotation.core.clock import utc_now
from rotation.core.config import Config, Credential

Clock = Callable[[], dt.datetime]

DAY = dt.timedelta(days=1)

EXIT_CURRENT = 0
EXIT_DUE = 1
EXIT_EXPIRED = 2

# What the daily check reports overall, in the features' words, and the exit code `rotation status` gives for it.
OVERALL: Mapping[str, int] = {"every credential current": EXIT_CURRENT, "a rotation due": EXIT_DUE,
                              "a credential expired": EXIT_EXPIRED}
STATES = ("current", "due", "expired", "never rotated")


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
    logged_as: str | None = None  # the credential_type of the row that counted: the type itself or an alias

    @property
    def state(self) -> str:
        if self.never_rotated:
            return "never_rotated"
        if self.is_expired:
            return "expired"
        return "due" if self.is_rotation_due else "current"

    def describe(self) -> str:
        days = "no" if self.days_until_rotation is None else str(self.days_until_rotation)
        return f"{self.state.replace('_', ' ')} with {days} days until rotation"

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
        """The JSON of `rotation status --json` for this credential."""
        out: dict[str, Any] = {
            "credential_type": self.credential_type,
            "last_rotated_at": _iso(self.last_rotated_at),
            "rotation_due_at": _iso(self.rotation_due_at),
            "days_until_rotation": self.days_until_rotation,
            "is_rotation_due": self.is_rotation_due,
            "is_expired": self.is_expired,
            "never_rotated": self.never_rotated,
            "interval_days": self.interval_days,
            "warning_days": self.warning_days,
        }
        out["state"] = self.state
        return out


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat() if moment else None


def _require_aware(moment: dt.datetime, what: str) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return moment.astimezone(dt.UTC)


def days_until(due_at: dt.datetime, now: dt.datetime) -> int:
    """Whole days from now until due_at, rounded up (0 at the due instant, negative after it)."""
    return math.ceil((due_at - now) / DAY)


def evaluate(credential: Credential, last_rotated_at: dt.datetime | None, now: dt.datetime, *,
             logged_as: str | None = None) -> RotationStatus:
    """The status of one credential at `now`, given when it was last rotated (None: never)."""
    now = _require_aware(now, "now")
    interval, warning = credential.interval.days, credential.warning.days
    if last_rotated_at is None:
        return RotationStatus(credential.type, None, None, None, is_rotation_due=False, is_expired=True,
                              never_rotated=True, interval_days=interval, warning_days=warning)
    last = _require_aware(last_rotated_at, "last_rotated_at")
    due_at = last + credential.interval
    left = days_until(due_at, now)
    expired = now >= due_at
    return RotationStatus(credential.type, last, due_at, left, is_rotation_due=not expired and left <= warning,
                          is_expired=expired, never_rotated=False, interval_days=interval, warning_days=warning,
                          logged_as=logged_as)


LATEST_ROTATIONS_SQL = """
SELECT credential_type, max(rotated_at) AS last_rotated_at
FROM security_credential_rotations
WHERE credential_type = ANY(%(names)s) AND rotated_at <= %(now)s
GROUP BY credential_type
"""


def latest_rotations(conn: psycopg.Connection[Any], config: Config,
                     now: dt.datetime) -> dict[str, tuple[dt.datetime, str]]:
    """Per credential type: the latest rotated_at at or before `now` under any of its log names, and that name."""
    names = [name for c in config.credentials for name in c.log_names]
    rows = conn.execute(LATEST_ROTATIONS_SQL, {"names": names, "now": _require_aware(now, "now")}).fetchall()
    latest: dict[str, tuple[dt.datetime, str]] = {}
    for logged_as, at in rows:
        credential_type = config.log_type(logged_as)
        if credential_type is not None and (credential_type not in latest or at > latest[credential_type][0]):
            latest[credential_type] = (at, logged_as)
    return latest


def rotation_status(conn: psycopg.Connection[Any], config: Config,
                    clock: Clock = utc_now) -> dict[str, RotationStatus]:
    """Status of every credential of the registry (registry order), as of clock()."""
    now = _require_aware(clock(), "clock()")
    latest = latest_rotations(conn, config, now)
    return {c.type: _status(c, latest.get(c.type), now) for c in config.credentials}


def _status(credential: Credential, found: tuple[dt.datetime, str] | None, now: dt.datetime) -> RotationStatus:
    if found is None:
        return evaluate(credential, None, now)
    return evaluate(credential, found[0], now, logged_as=found[1])


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


def retirement_lines(env_file: Path, config: Config, now: dt.datetime) -> tuple[list[str], bool]:
    """Old values awaiting retirement beside this .env, and escrows (rotation.core.escrow) past their destruction
    date: the lines `rotation status` prints, and whether any is due (a retirement past its quiet period, an escrow
    past its date)."""
    lines, any_due = [], False
    for item in retirement.awaiting(env_file, config):
        due = item.due(now)
        any_due |= due
        lines.append(f"{'WARNING' if due else 'INFO'}: {item.credential}: old value {item.old} (rotation "
                     f"{item.rotation_id}) {'awaits retirement since' if due else 'may be retired from'} "
                     f"{_iso(item.retire_from)}; still in {', '.join(Path(f).name for f in item.files)}: "
                     f"`rotation retire {item.credential}`")
    for sealed in escrow.all_in(retirement.escrow_dir(env_file, config)):
        due = sealed.due(now)
        any_due |= due
        then = f": `rotation retire {sealed.credential}` destroys it" if due else ""
        lines.append(f"{'WARNING' if due else 'INFO'}: {sealed.credential}: escrow of {sealed.fingerprint} "
                     f"{'was due for destruction' if due else 'kept until'} {_iso(sealed.destroy_after)} "
                     f"({sealed.path.name}){then}")
    return lines, any_due
