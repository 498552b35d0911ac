"""The daily rotation check (the runbook's "Check Rotation Status" and its cron job "Set Up Rotation Alerts"): the
status of every credential, the overall verdict, and the alert e-mail. `rotation status` and the monitoring feature
run these same functions; the checks a feature makes of their results are here too."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from rotation.core.config import Config, Credential
from rotation.core.proof import Evidence, NoEvidence, require
from rotation.monitoring import alerts, status

RECENT_ROTATIONS_SQL = """
SELECT rotation_id::text, credential_type, rotated_at, rotated_by, rotation_reason, next_rotation_due
FROM security_credential_rotations ORDER BY rotated_at DESC LIMIT %s
"""


@dataclass(frozen=True)
class StatusReport:
    """Every credential's status at one instant, from one deployment configuration."""

    as_of: dt.datetime
    statuses: Mapping[str, status.RotationStatus]  # by credential type, in registry order
    config_source: str

    @property
    def exit_code(self) -> int:
        return status.exit_code(self.statuses.values())

    @property
    def alert_lines(self) -> list[str]:
        return status.alert_lines(self.statuses.values())

    def of(self, credential: Credential) -> status.RotationStatus:
        return self.statuses[credential.type]

    def to_json(self) -> dict[str, Any]:
        """`rotation status --json`."""
        return {"as_of": self.as_of.astimezone(dt.UTC).isoformat(), "exit_code": self.exit_code,
                "credentials": {name: s.to_json() for name, s in self.statuses.items()}}


@dataclass(frozen=True)
class AlertOutcome:
    to: str | None
    lines: tuple[str, ...]
    sent: bool
    error: str | None = None  # why it was not sent, when it should have been

    def describe(self) -> str:
        if self.error:
            return f"alert e-mail NOT sent: {self.error}"
        if self.sent:
            return f"alert e-mail sent to {self.to}"
        return "no alert e-mail: every credential current" if not self.lines else "no alert address given"


@dataclass(frozen=True)
class DailyCheck:
    report: StatusReport
    alert: AlertOutcome


def read_status(dsn: str, config: Config, as_of: dt.datetime) -> StatusReport:
    with psycopg.connect(dsn, connect_timeout=15) as conn:
        statuses = status.rotation_status(conn, config, clock=lambda: as_of)
    return StatusReport(as_of, statuses, config.source)


def check_status(dsn: str, config: Config, as_of: dt.datetime, evidence: Evidence) -> StatusReport:
    """Read every credential's status and record it, with the rotation-log name that counted for each."""
    report = read_status(dsn, config, as_of)
    evidence.record("rotation status", {t: {**s.to_json(), "logged as": s.logged_as} for t, s in
                                        report.statuses.items()},
                    source=f"{status.LATEST_ROTATIONS_SQL.strip()}  -- now = {as_of.isoformat()}; names = every "
                           f"credential type and log alias, intervals and warning periods from {config.source}")
    return report


def smtp_password_env(config: Config) -> str:
    """The .env variable of the SMTP credential (the alert uses the app's own mail account)."""
    return next((c.env for c in config.credentials if c.provider == "smtp"), "SMTP_PASSWORD")


def send_alert(report: StatusReport, to: str | None, *, env_file: Path, config: Config, ca_file: Path | None = None,
               sender: str | None = None, evidence: Evidence | None = None) -> AlertOutcome:
    """E-mail the report's alert lines to `to` when any credential is due or expired; never raises for a failed
    delivery (the outcome says why, and `rotation status` exits 3)."""
    lines = tuple(report.alert_lines)
    if not to or not lines:
        return AlertOutcome(to, lines, sent=False)
    try:
        settings = alerts.SmtpSettings.from_env_file(env_file, password_env=smtp_password_env(config))
        (evidence or NoEvidence()).register_secret(settings.password)
        alerts.send_alert(list(lines), to, settings, sender=sender or config.stakeholders.sender, ca_file=ca_file)
    except (alerts.AlertError, OSError) as exc:
        return AlertOutcome(to, lines, sent=False, error=str(exc))
    return AlertOutcome(to, lines, sent=True)


def daily_check(dsn: str, config: Config, *, as_of: dt.datetime, alert_to: str | None, env_file: Path,
                ca_file: Path | None = None, sender: str | None = None,
                evidence: Evidence | None = None) -> DailyCheck:
    """What the daily cron job runs: the status of every credential, then the alert e-mail when anything is due."""
    record = evidence or NoEvidence()
    report = check_status(dsn, config, as_of, record)
    alert = send_alert(report, alert_to, env_file=env_file, config=config, ca_file=ca_file, sender=sender,
                       evidence=record)
    record.record("daily rotation check", {"exit code": report.exit_code, "alert lines": list(alert.lines),
                                           "alert e-mail": alert.describe()},
                  source=f"rotation status --as-of {as_of.isoformat()} --alert-email {alert_to} "
                         f"--env-file {env_file.name} (SMTP settings from .env, STARTTLS with a verified certificate)")
    return DailyCheck(report, alert)


def recent_rotations(dsn: str, evidence: Evidence, *, limit: int = 10) -> int:
    """The runbook's "Document All Rotations" query, recorded; returns how many rows it found."""
    with psycopg.connect(dsn, connect_timeout=15) as conn:
        rows = conn.execute(RECENT_ROTATIONS_SQL, (limit,)).fetchall()
    evidence.record("latest rotations", [dict(zip(("rotation_id", "credential_type", "rotated_at", "rotated_by",
                                                   "rotation_reason", "next_rotation_due"), map(str, row),
                                                  strict=True)) for row in rows],
                    source=RECENT_ROTATIONS_SQL.strip().replace("%s", str(limit)))
    return len(rows)


# --- the checks the features make ------------------------------------------------------------------------------------

def require_schedule(config: Config, interval_days: int, warning_days: int, evidence: Evidence) -> None:
    """Every credential of the registry is rotated every `interval_days`, the warning `warning_days` before."""
    evidence.record("rotation schedule", {c.type: {"interval_days": c.interval.days, "warning_days": c.warning.days}
                                         for c in config.credentials},
                    source=f"{config.source}: [credentials.*] interval_days, warning_days")
    off = [f"{c.label}: every {c.interval.days} days, warning {c.warning.days} days before"
           for c in config.credentials if (c.interval.days, c.warning.days) != (interval_days, warning_days)]
    require(not off, f"{config.source} does not rotate every credential every {interval_days} days with the "
                     f"warning {warning_days} days before: {'; '.join(off)}")


def require_state(report: StatusReport, credential: Credential, state: str, days: str) -> None:
    """The credential is reported `state` ('current', 'due', 'expired', 'never rotated') with `days` days until
    rotation ('no' when never rotated)."""
    require(state in status.STATES, f"unknown state {state!r}; the states are {', '.join(status.STATES)}")
    got = report.of(credential)
    expected = None if days == "no" else int(days)
    require((got.state.replace("_", " "), got.days_until_rotation) == (state, expected),
            f"{credential.label} is reported {got.describe()}; expected {state} with {days} days until rotation")


def verdict(code: int) -> str:
    return next((words for words, c in status.OVERALL.items() if c == code), f"exit {code}")


def require_overall(report: StatusReport, overall: str, evidence: Evidence) -> None:
    """The daily check's overall verdict, which `rotation status` gives as its exit code."""
    require(overall in status.OVERALL, f"unknown verdict {overall!r}; the verdicts are {', '.join(status.OVERALL)}")
    expected = status.OVERALL[overall]
    evidence.record("daily check verdict", {"verdict": verdict(report.exit_code), "exit code": report.exit_code},
                    source="rotation status exit code: 0 every credential current, 1 a rotation due, "
                           "2 a credential expired or never rotated")
    require(report.exit_code == expected, f"the daily check reports {verdict(report.exit_code)} (exit "
                                          f"{report.exit_code}); expected {overall} (exit {expected})")


def require_within_interval(report: StatusReport) -> None:
    """No credential is expired or was never rotated."""
    late = [line for s in report.statuses.values() if s.is_expired and (line := s.alert_line())]
    require(not late, "; ".join(late))
