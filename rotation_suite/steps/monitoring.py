"""Steps of the runbook's "Automated Rotation Monitoring": the rotation status from the rotation log, the daily check
and its alert e-mail. The status and its checks live in rotation.monitoring (which `rotation status` runs too); the
rotation history a scenario stands on and the alert mail account are staging's, offered by the plugin
(rotation_pytest.practices: `seeded_history`, `alert_mail`)."""

from __future__ import annotations

import datetime as dt

from pytest_bdd import given, parsers, then, when

from rotation.core.config import Config, Credential
from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence
from rotation.monitoring import check
from rotation_pytest.practices import AlertMailbox, SeededHistory


@given(parsers.parse("every credential is rotated every {interval:d} days, with the warning {warning:d} days before"))
def schedule(rotation_config: Config, interval: int, warning: int, evidence: Evidence) -> None:
    check.require_schedule(rotation_config, interval, warning, evidence)


@given(parsers.parse("the clock reads {moment}"), target_fixture="clock")
def clock_reads(moment: str, evidence: Evidence) -> dt.datetime:
    evidence.record("clock", moment, source="the scenario's instant (rotation status --as-of)")
    return dt.datetime.fromisoformat(moment)


@given(parsers.re(r"the (?P<credential>.+?) was last rotated (?P<age>never|.+?)(?: ago)?"), target_fixture="subject")
def last_rotated(seeded_history: SeededHistory, clock: dt.datetime, credential: str, age: str) -> Credential:
    return seeded_history.rotated_ago(credential, age, now=clock)


@given(parsers.parse("every other credential was rotated {age} ago"))
def others_rotated(seeded_history: SeededHistory, clock: dt.datetime, subject: Credential, age: str) -> None:
    seeded_history.others_rotated_ago(age, now=clock, except_for=[subject])


@given(parsers.parse("every credential was rotated {age} ago"))
def all_rotated(seeded_history: SeededHistory, clock: dt.datetime, age: str) -> None:
    seeded_history.others_rotated_ago(age, now=clock)


@given(parsers.re(r"the application itself logged a rotation of the (?P<credential>.+) (?P<age>\d+ days?) ago"))
def app_logged(seeded_history: SeededHistory, clock: dt.datetime, credential: str, age: str) -> None:
    seeded_history.app_logged(credential, age, now=clock)


@given("the rotation log holds these latest rotations:")
def latest_rotations(seeded_history: SeededHistory, clock: dt.datetime, datatable: list[list[str]]) -> None:
    seeded_history.table_rotated(datatable, now=clock)


@given("the alert mail account accepts logins only over a verified encrypted connection")
def alert_account(alert_mail: AlertMailbox, deployment: Deployment, evidence: Evidence) -> None:
    alert_mail.open_account(deployment, evidence)


@when("the rotation status is checked", target_fixture="status_report")
def status_checked(deployment: Deployment, clock: dt.datetime, evidence: Evidence) -> check.StatusReport:
    return check.check_status(deployment.dsn, deployment.config, clock, evidence)


@when(parsers.parse("the daily rotation check runs with alerts to {address}"), target_fixture="daily")
def daily_check(deployment: Deployment, clock: dt.datetime, address: str, evidence: Evidence) -> check.DailyCheck:
    return check.daily_check(deployment.dsn, deployment.config, as_of=clock, alert_to=address,
                             env_file=deployment.env_file, evidence=evidence)


@then(parsers.parse("the {credential} is reported {state} with {days} days until rotation"))
def reported(status_report: check.StatusReport, rotation_config: Config, credential: str, state: str,
             days: str) -> None:
    check.require_state(status_report, rotation_config.credential(credential), state, days)


@then(parsers.parse("the daily check reports {verdict}"))
def daily_verdict(status_report: check.StatusReport, verdict: str, evidence: Evidence) -> None:
    check.require_overall(status_report, verdict, evidence)


@then(parsers.parse('the administrator receives one "{subject}" e-mail, sent encrypted, with exactly these lines:'))
def one_alert(alert_mail: AlertMailbox, daily: check.DailyCheck, subject: str, datatable: list[list[str]],
              evidence: Evidence) -> None:
    alert_mail.require_one_alert(daily, subject, datatable, evidence)


@then("the administrator receives no e-mail")
def no_alert(alert_mail: AlertMailbox, daily: check.DailyCheck, evidence: Evidence) -> None:
    alert_mail.require_no_alert(daily, evidence)
