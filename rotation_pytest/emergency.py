"""The emergency procedure's selection and its record.

  - `--compromised` keeps only the emergency scenarios of the chosen credentials (staging default: all; live: none,
    and the live guard refuses an emergency run without it);
  - the incident window options are validated at start-up, before anything is touched;
  - the incident record (a session-wide account of every step's time) is kept in the config's stash, and its figures
    close the terminal output.
"""

from __future__ import annotations

import dataclasses

import pytest

from rotation.core.config import Stakeholders
from rotation.emergency import plan
from rotation.emergency.incident import IncidentRecord, hms
from rotation.emergency.notify import split_addresses
from rotation_pytest.fixtures import config_of, target_of
from staging.world import staging_config

INCIDENT = pytest.StashKey[IncidentRecord]()
INCIDENT_REPORT = pytest.StashKey[str]()


def compromised_of(config: pytest.Config) -> tuple[str, ...]:
    return plan.parse_compromised(config.getoption("compromised"), config_of(config),
                                  default_all=target_of(config) != "live")


def stakeholders_of(config: pytest.Config) -> Stakeholders:
    """The configuration's stakeholders (staging: the stand-in's mailbox when it names none), each group replaced
    by its --notify-* option when given."""
    rotation_config = config_of(config)
    base = (rotation_config if target_of(config) == "live" else staging_config(rotation_config)).stakeholders
    chosen = {field: config.getoption(option) for field, option in (
        ("security_team", "notify_security"), ("system_administrators", "notify_sysadmins"),
        ("compliance_officer", "notify_compliance"), ("sender", "notify_from"))}
    return dataclasses.replace(base, **{f: (v if f == "sender" else split_addresses(v))
                                        for f, v in chosen.items() if v is not None})


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a malformed selection or incident window before anything runs."""
    try:
        compromised_of(config)
        for option in ("incident_start", "incident_end"):
            value = config.getoption(option)
            if value is not None:
                plan.aware_moment(value, "--" + option.replace("_", "-"))
    except plan.PlanError as exc:
        raise pytest.UsageError(str(exc)) from None


def _credential_of(item: pytest.Item, config: pytest.Config) -> str | None:
    return next((c.type for c in config_of(config).credentials if item.get_closest_marker(c.type)), None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = set(compromised_of(config))
    keep, drop = [], []
    for item in items:
        credential = _credential_of(item, config)
        not_chosen = item.get_closest_marker("emergency") and credential and credential not in chosen
        (drop if not_chosen else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    record = config.stash.get(INCIDENT, None)
    if record is None or not record.outcomes:
        return
    terminalreporter.section("emergency rotation: time to revoke and restore")
    for o in record.outcomes.values():
        terminalreporter.write_line(f"{o.credential_type:<18} time-to-revoke {hms(o.time_to_revoke):>8}   "
                                    f"time-to-restore {hms(o.time_to_restore):>8}   "
                                    f"old credential: {o.rejection or 'NOT PROVEN REJECTED'}")
    if record.review:
        terminalreporter.write_line(f"access review: {record.review.summary()}")
    terminalreporter.write_line("stakeholders notified: " + (", ".join(record.notification.recipients)
                                                             if record.notification else "NO"))
    report = config.stash.get(INCIDENT_REPORT, None)
    if report is not None:
        terminalreporter.write_line(f"incident report: {report} in the run folder (see 'evidence' below)")
