"""Steps of the runbook's "Automated Rotation Monitoring": rotation status from the rotation log, and the alert e-mail.

The scenarios seed the rotation log, so they run in staging only (a scratch database with the CRM schema)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path

import psycopg
import pytest
from pytest_bdd import given, parsers, then, when

from rotation.cli import main as rotation_cli
from rotation.core.keys import generate_key
from rotation.monitoring import status
from staging.crm import apply_crm_schema
from staging.postgres import StagingServer, scratch_database
from staging.smtp_standin import SmtpStandIn, smtp_standin

ALERT_TO = "admin@eventplanning.example.com"
AGE = re.compile(r"(?P<days>\d+) days?(?: (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d))?")


@dataclass
class StatusCheck:
    """What one monitoring scenario set up and observed."""

    dsn: str
    now: dt.datetime | None = None
    schedule: dict[str, status.Schedule] = field(default_factory=dict)
    statuses: dict[str, status.RotationStatus] = field(default_factory=dict)
    exit_code: int | None = None
    output: str = ""
    env_file: Path | None = None
    smtp: SmtpStandIn | None = None
    smtp_password: str = ""


@pytest.fixture
def status_check(target: str, pg_server: StagingServer | None) -> Iterator[StatusCheck]:
    """A scratch CRM database whose rotation log the scenario may write: staging only."""
    if target != "staging" or pg_server is None:
        pytest.skip("monitoring scenarios seed security_credential_rotations: staging only")
    with scratch_database(pg_server.admin_dsn) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            apply_crm_schema(conn)
        yield StatusCheck(dsn)


@pytest.fixture
def alert_smtp(tmp_path: Path) -> Iterator[SmtpStandIn]:
    with smtp_standin(tmp_path / "smtp") as server:
        yield server


def parse_age(text: str) -> dt.timedelta | None:
    """'82 days', '82 days 23:59:59' or 'never'."""
    if text.strip() == "never":
        return None
    m = AGE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not an age: {text!r} (expected 'N days', 'N days HH:MM:SS' or 'never')")
    return dt.timedelta(days=int(m["days"]), hours=int(m["h"] or 0), minutes=int(m["m"] or 0),
                        seconds=int(m["s"] or 0))


def log_rotation(check: StatusCheck, credential_type: str, age: dt.timedelta | None) -> None:
    if age is None:
        return
    assert check.now is not None, "set the clock first"
    at = check.now - age
    with psycopg.connect(check.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO security_credential_rotations (credential_type, rotated_at, rotated_by, "
                     "rotation_reason, next_rotation_due) VALUES (%s, %s, %s, %s, %s)",
                     (credential_type, at, "monitoring-scenario", "seeded by the scenario", at + dt.timedelta(days=90)))


def run_cli(check: StatusCheck, *args: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        check.exit_code = rotation_cli(["status", "--dsn", check.dsn, "--as-of", check.now.isoformat(), *args])
    check.output = out.getvalue() + err.getvalue()


@given("the rotation schedule is the runbook's: every 90 days, warning 7 days before")
def runbook_schedule(status_check: StatusCheck, evidence) -> None:
    status_check.schedule = status.load_schedule(None)
    evidence.record("rotation schedule", {k: v.__dict__ for k, v in status_check.schedule.items()},
                    source="rotation.status.DEFAULT_SCHEDULE (runbook: Rotation Schedule)")
    assert all(s == status.Schedule(90, 7) for s in status_check.schedule.values())
    assert set(status_check.schedule) == set(status.CREDENTIAL_TYPES)


@given(parsers.parse("the clock reads {moment}"))
def clock_reads(status_check: StatusCheck, moment: str) -> None:
    status_check.now = dt.datetime.fromisoformat(moment)


@given(parsers.parse("every credential type but {credential} was rotated {age} ago"))
def others_rotated(status_check: StatusCheck, credential: str, age: str) -> None:
    for t in status.CREDENTIAL_TYPES:
        if t != credential:
            log_rotation(status_check, t, parse_age(age))


@given(parsers.parse("every credential type was rotated {age} ago"))
def all_rotated(status_check: StatusCheck, age: str) -> None:
    status_check.now = status_check.now or status.utc_now()
    for t in status.CREDENTIAL_TYPES:
        log_rotation(status_check, t, parse_age(age))


@given(parsers.parse("{credential} was last rotated {age} ago"))
def credential_rotated(status_check: StatusCheck, credential: str, age: str) -> None:
    log_rotation(status_check, credential, parse_age(age))


@given("the rotation log holds these latest rotations:")
def rotation_table(status_check: StatusCheck, datatable: list[list[str]]) -> None:
    status_check.now = status_check.now or status.utc_now()
    header, *rows = datatable
    for row in rows:
        record = dict(zip(header, row, strict=True))
        log_rotation(status_check, record["credential"], parse_age(record["rotated"]))


@when("the rotation status is checked")
def status_checked(status_check: StatusCheck, evidence) -> None:
    with psycopg.connect(status_check.dsn) as conn:
        status_check.statuses = status.rotation_status(conn, status_check.schedule, clock=lambda: status_check.now)
    evidence.record("rotation status", {k: v.to_json() for k, v in status_check.statuses.items()},
                    source=status.LATEST_ROTATIONS_SQL.strip() + f"  -- now = {status_check.now.isoformat()}")


@then(parsers.parse("{credential} is reported {state} with {days} days until rotation"))
def reported(status_check: StatusCheck, credential: str, state: str, days: str) -> None:
    got = status_check.statuses[credential]
    expected_days = None if days == "no" else int(days)
    assert (got.state.replace("_", " "), got.days_until_rotation) == (state, expected_days), (
        f"{credential}: got {got.state} with {got.days_until_rotation} days; expected {state} with {days}")
    assert got.is_expired == (state in ("expired", "never rotated"))
    assert got.is_rotation_due == (state == "due")
    if got.rotation_due_at is not None:
        assert got.rotation_due_at == got.last_rotated_at + dt.timedelta(days=90)


@then(parsers.parse("`rotation status` exits {code:d}"))
def cli_exit(status_check: StatusCheck, code: int, evidence) -> None:
    if status_check.exit_code is None:
        run_cli(status_check, "--json")
    evidence.record("rotation status exit code", status_check.exit_code,
                    source=f"rotation status --as-of {status_check.now.isoformat()} --dsn <scratch database>")
    assert status_check.exit_code == code, f"exit {status_check.exit_code}, expected {code}:\n{status_check.output}"


@given("the SMTP stand-in accepts the alert account only after STARTTLS")
def smtp_ready(status_check: StatusCheck, alert_smtp: SmtpStandIn, tmp_path: Path, evidence) -> None:
    password = generate_key()
    evidence.register_secret(password)
    alert_smtp.add_password(password)
    env_file = tmp_path / ".env"
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"SMTP_HOST={alert_smtp.host}\nSMTP_PORT={alert_smtp.port}\nSMTP_USERNAME={alert_smtp.username}\n"
                f"SMTP_PASSWORD={password}\n")
    status_check.env_file, status_check.smtp, status_check.smtp_password = env_file, alert_smtp, password


@when(parsers.parse("`rotation status --alert-email {address}` runs with the SMTP settings from .env"))
def alert_run(status_check: StatusCheck, address: str, evidence) -> None:
    assert status_check.smtp is not None and status_check.env_file is not None
    run_cli(status_check, "--alert-email", address, "--env-file", str(status_check.env_file),
            "--smtp-ca-file", str(status_check.smtp.ca_file))
    evidence.record("rotation status --alert-email output", status_check.output,
                    source=f"rotation status --alert-email {address} --env-file .env --smtp-ca-file <staging CA>")


@then(parsers.parse('the SMTP stand-in received one "{subject}" e-mail to {address} with exactly these lines:'))
def alert_received(status_check: StatusCheck, subject: str, address: str, datatable: list[list[str]],
                   evidence) -> None:
    messages = status_check.smtp.messages
    assert len(messages) == 1, f"{len(messages)} e-mails received, expected 1"
    received = messages[0]
    msg = message_from_bytes(received["data"])
    body = msg.get_payload(decode=True).decode()
    evidence.record("alert e-mail received", {"subject": msg["Subject"], "to": msg["To"],
                                              "envelope to": received["rcpt_tos"], "over TLS": received["tls"],
                                              "authenticated": received["authenticated"], "body": body},
                    source=f"SMTP stand-in on {status_check.smtp.host}:{status_check.smtp.port} (STARTTLS + AUTH)")
    assert received["tls"] and received["authenticated"], "the alert was not sent over STARTTLS with AUTH"
    assert msg["Subject"] == subject and msg["To"] == address and received["rcpt_tos"] == [address]
    assert body.splitlines() == [row[0] for row in datatable[1:]]


@then("the SMTP stand-in received no e-mail")
def no_alert(status_check: StatusCheck) -> None:
    assert status_check.smtp.messages == [], "an alert was sent although every credential is current"


@then("the command's output does not contain the SMTP password")
def no_password(status_check: StatusCheck) -> None:
    assert status_check.smtp_password not in status_check.output
