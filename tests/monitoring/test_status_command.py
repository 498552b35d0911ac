"""`rotation status` against a seeded rotation log in real PostgreSQL: exit codes, JSON, table, alert mail."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from rotation.cli import main
from staging import rotation_history
from tests.monitoring.conftest import CONFIG, NOW, RotationLog, credential
from tests.monitoring.mini_smtp import SmtpServer, self_signed_cert, smtp_server

DAY = dt.timedelta(days=1)
ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"last_rotated_at", "rotation_due_at", "days_until_rotation", "is_rotation_due", "is_expired"}


def status(capsys: pytest.CaptureFixture[str], dsn: str, *args: str) -> tuple[int, str, str]:
    code = main(["status", "--dsn", dsn, "--as-of", NOW.isoformat(), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_exit_0_when_all_current(rotation_log: RotationLog, monitoring_dsn: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.all_rotated(NOW - 10 * DAY)
    code, out, _ = status(capsys, monitoring_dsn)
    assert code == 0
    assert "All credentials current." in out
    assert out.count("CURRENT") == len(CONFIG.credentials)


def test_exit_1_when_any_due(rotation_log: RotationLog, monitoring_dsn: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.all_rotated(NOW - 10 * DAY, but=["whatsapp"])
    rotation_log.rotated("whatsapp", NOW - 85 * DAY)
    rotation_log.rotated("whatsapp", NOW - 85 * DAY - dt.timedelta(hours=1))  # older: not used
    code, out, _ = status(capsys, monitoring_dsn)
    assert code == 1
    assert f"WARNING: {credential('whatsapp').type} credentials rotation due in 5 days" in out


def test_exit_2_when_any_expired(rotation_log: RotationLog, monitoring_dsn: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.all_rotated(NOW - 85 * DAY)
    rotation_log.rotated("database", NOW - 10 * DAY)
    rotation_log.rotated("twilio", NOW - 91 * DAY)  # older than the 85-day row: that one still counts
    rotation_log.rotated("smtp", NOW - 3 * DAY)
    code, _, _ = status(capsys, monitoring_dsn)
    assert code == 1
    rotation_log.rotated("twilio", NOW - 91 * DAY, logged_as="twilio_legacy")  # no credential's name: ignored
    assert status(capsys, monitoring_dsn)[0] == 1


def test_exit_2_when_expired_at_the_due_instant(rotation_log: RotationLog, monitoring_dsn: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.all_rotated(NOW - 10 * DAY, but=["twilio"])
    rotation_log.rotated("twilio", NOW - 90 * DAY)
    code, out, _ = status(capsys, monitoring_dsn)
    assert code == 2
    assert f"CRITICAL: {credential('twilio').type} credentials have EXPIRED!" in out


def test_exit_2_when_never_rotated(rotation_log: RotationLog, monitoring_dsn: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.all_rotated(NOW - 10 * DAY, but=["smtp"])
    code, out, _ = status(capsys, monitoring_dsn)
    assert code == 2
    assert "NEVER ROTATED" in out
    assert f"CRITICAL: {credential('smtp').type} credentials have EXPIRED! (never rotated" in out


def test_empty_log_is_expired_not_fine(rotation_log: RotationLog, monitoring_dsn: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = status(capsys, monitoring_dsn)
    assert code == 2
    assert out.count("NEVER ROTATED") == len(CONFIG.credentials)


def test_json_parses_and_has_the_runbook_fields(rotation_log: RotationLog, monitoring_dsn: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    database, whatsapp, twilio, smtp = (credential(n) for n in ("database", "whatsapp", "twilio", "smtp"))
    rotation_log.rotated("database", NOW - 83 * DAY)
    rotation_log.rotated("whatsapp", NOW - 1 * DAY)
    rotation_log.rotated("twilio", NOW - 90 * DAY)
    code, out, _ = status(capsys, monitoring_dsn, "--json")
    doc = json.loads(out)
    assert code == doc["exit_code"] == 2
    assert doc["as_of"] == "2026-11-25T06:00:00+00:00"
    creds = doc["credentials"]
    assert list(creds) == list(CONFIG.types)
    for info in creds.values():
        assert FIELDS <= set(info)
        assert "logged as" not in info and "logged_as" not in info  # the output is unchanged
    key = creds[database.type]
    assert key == {**key, "last_rotated_at": "2026-09-03T06:00:00+00:00",
                   "rotation_due_at": "2026-12-02T06:00:00+00:00", "days_until_rotation": 7,
                   "is_rotation_due": True, "is_expired": False, "state": "due", "interval_days": 90,
                   "warning_days": 7}
    assert creds[twilio.type]["is_expired"] is True and creds[twilio.type]["days_until_rotation"] == 0
    assert creds[whatsapp.type]["state"] == "current"
    never = creds[smtp.type]
    assert never == {**never, "last_rotated_at": None, "rotation_due_at": None, "days_until_rotation": None,
                     "is_expired": True, "never_rotated": True}


def edited_config(tmp_path: Path, name: str, interval_days: int) -> Path:
    """The built-in rotation.toml with one credential's interval_days changed, as an operator edits a copy."""
    c = credential(name)
    text = resources.files("rotation.core").joinpath("rotation.toml").read_text()
    section = text.index(f"[credentials.{c.type}]")
    line = text.index("interval_days = ", section)
    end = text.index("\n", line)
    f = tmp_path / "rotation.toml"
    f.write_text(text[:line] + f"interval_days = {interval_days}" + text[end:])
    return f


def test_intervals_come_from_the_configuration(rotation_log: RotationLog, monitoring_dsn: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rotation_log.all_rotated(NOW - 40 * DAY)
    assert status(capsys, monitoring_dsn)[0] == 0
    config = edited_config(tmp_path, "smtp", 45)
    code, out, _ = status(capsys, monitoring_dsn, "--config", str(config))
    assert code == 1
    assert f"WARNING: {credential('smtp').type} credentials rotation due in 5 days" in out
    monkeypatch.setenv("ROTATION_CONFIG", str(config))
    assert status(capsys, monitoring_dsn)[0] == 1


@pytest.mark.parametrize("how", ["option", "environment"])
def test_the_removed_schedule_file_is_refused(rotation_log: RotationLog, monitoring_dsn: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                              how: str) -> None:
    """A cron line that still names a schedule file fails loudly (exit 3) instead of silently using other
    intervals than the rotation log's next_rotation_due."""
    rotation_log.all_rotated(NOW - 10 * DAY)
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("schedule: {}\n")
    args = ("--schedule", str(schedule)) if how == "option" else ()
    if how == "environment":
        monkeypatch.setenv("ROTATION_SCHEDULE", str(schedule))
    code, out, err = status(capsys, monitoring_dsn, *args)
    assert code == 3 and out == ""
    assert "interval_days and warning_days live in the deployment configuration" in err


def test_a_bad_configuration_is_an_error(rotation_log: RotationLog, monitoring_dsn: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = status(capsys, monitoring_dsn, "--config", str(edited_config(tmp_path, "twilio", 0)))
    assert code == 3 and "interval_days must be positive" in err


def test_real_clock_and_console_entry_point(rotation_log: RotationLog, monitoring_dsn: str) -> None:
    """Through `python -m rotation` with the DSN from ROTATION_DSN and the real clock."""
    now = dt.datetime.now(dt.UTC)
    rotation_log.all_rotated(now - 30 * DAY)
    env = {**os.environ, "ROTATION_DSN": monitoring_dsn}
    env.pop("ROTATION_CONFIG", None)
    run = subprocess.run([sys.executable, "-m", "rotation", "status"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    rotation_history.forget(monitoring_dsn, credential("twilio"))
    rotation_log.rotated("twilio", now - 100 * DAY)
    run = subprocess.run([sys.executable, "-m", "rotation", "status", "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert json.loads(run.stdout)["credentials"][credential("twilio").type]["days_until_rotation"] == -10


def test_no_database_is_an_error_not_a_pass(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROTATION_DSN", raising=False)
    assert main(["status"]) == 3
    assert main(["status", "--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=2"]) == 3
    assert "cannot read security_credential_rotations" in capsys.readouterr().err


def write_env(path: Path, smtp: SmtpServer, password: str | None = None, password_env: str | None = None) -> Path:
    path.write_text(f"SMTP_HOST={smtp.host}\nSMTP_PORT={smtp.port}\nSMTP_USERNAME={smtp.username}\n"
                    f"{password_env or credential('smtp').env}={password or smtp.password}\n")
    path.chmod(0o600)
    return path


def test_alert_email_carries_the_runbook_lines(rotation_log: RotationLog, monitoring_dsn: str,
                                               smtp: SmtpServer, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.rotated("database", NOW - 83 * DAY)
    rotation_log.rotated("whatsapp", NOW - 88 * DAY)  # older row: the 10-day one wins
    rotation_log.rotated("whatsapp", NOW - 10 * DAY)
    rotation_log.rotated("twilio", NOW - 95 * DAY)
    env = write_env(tmp_path / ".env", smtp)
    code, out, err = status(capsys, monitoring_dsn, "--alert-email", "admin@eventplanning.example.com",
                            "--env-file", str(env), "--smtp-ca-file", str(smtp.ca_file))
    assert code == 2, err
    expected = [f"WARNING: {credential('database').type} credentials rotation due in 7 days",
                f"CRITICAL: {credential('twilio').type} credentials have EXPIRED!",
                f"CRITICAL: {credential('smtp').type} credentials have EXPIRED! (never rotated: no row in "
                "security_credential_rotations)"]
    assert len(smtp.mailbox.messages) == 1
    msg = smtp.mailbox.messages[0]
    assert msg["Subject"] == "Credential Rotation Alert"
    assert msg["To"] == "admin@eventplanning.example.com"
    assert smtp.mailbox.recipients == [["admin@eventplanning.example.com"]]
    assert msg.get_payload(decode=True).decode().splitlines() == expected
    assert smtp.password not in out + err


def test_no_alert_email_when_all_current(rotation_log: RotationLog, monitoring_dsn: str, smtp: SmtpServer,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.all_rotated(NOW - 10 * DAY)
    env = write_env(tmp_path / ".env", smtp)
    code, _, _ = status(capsys, monitoring_dsn, "--alert-email", "admin@example.com", "--env-file", str(env),
                        "--smtp-ca-file", str(smtp.ca_file))
    assert code == 0
    assert smtp.mailbox.messages == []


FAULTS = ["untrusted certificate", "wrong password", "no STARTTLS", "missing setting"]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_alert_email_failure_is_loud(fault: str, rotation_log: RotationLog, monitoring_dsn: str,
                                     smtp: SmtpServer, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Every way the alert can fail exits 3, delivers nothing and never prints the SMTP password."""
    server, ca, env = smtp, smtp.ca_file, write_env(tmp_path / ".env", smtp)
    with contextlib.ExitStack() as stack:
        if fault == "untrusted certificate":
            (tmp_path / "other").mkdir()
            ca = self_signed_cert(tmp_path / "other")[0]
        elif fault == "wrong password":
            write_env(env, smtp, password="not-the-password-" + "x" * 20)
        elif fault == "no STARTTLS":
            (tmp_path / "plain").mkdir()
            server = stack.enter_context(smtp_server(tmp_path / "plain", "u", "p", tls=False))
            write_env(env, server)
        else:
            env.write_text(f"SMTP_HOST={smtp.host}\nSMTP_PORT={smtp.port}\n"
                           f"{credential('smtp').env}={smtp.password}\n")
        code, out, err = status(capsys, monitoring_dsn, "--alert-email", "admin@example.com", "--env-file",
                                str(env), "--smtp-ca-file", str(ca))
    assert code == 3
    assert "alert e-mail NOT sent" in err
    assert server.mailbox.messages == []
    assert smtp.password not in out + err


def test_ca_file_from_env(rotation_log: RotationLog, monitoring_dsn: str, smtp: SmtpServer, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    """SMTP_CA_FILE in .env stands in for --smtp-ca-file (staging's .env carries it)."""
    rotation_log.rotated("twilio", NOW - 95 * DAY)
    env = write_env(tmp_path / ".env", smtp)
    env.write_text(env.read_text() + f"SMTP_CA_FILE={smtp.ca_file}\n")
    code, _, err = status(capsys, monitoring_dsn, "--alert-email", "admin@example.com", "--env-file", str(env))
    assert code == 2, err
    assert len(smtp.mailbox.messages) == 1


def test_system_trust_store_rejects_a_private_ca(rotation_log: RotationLog, monitoring_dsn: str, smtp: SmtpServer,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a CA file the system store is used, and a self-signed certificate is refused: verification is on."""
    rotation_log.rotated("twilio", NOW - 95 * DAY)
    env = write_env(tmp_path / ".env", smtp)
    code, _, err = status(capsys, monitoring_dsn, "--alert-email", "admin@example.com", "--env-file", str(env))
    assert code == 3
    assert "not verified" in err
    assert smtp.mailbox.messages == []


def test_the_alert_reads_the_registrys_password_variable(rotation_log: RotationLog, monitoring_dsn: str,
                                                         smtp: SmtpServer, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A deployment whose SMTP credential lives in another .env variable: the alert logs in with that one."""
    text = resources.files("rotation.core").joinpath("rotation.toml").read_text()
    config = tmp_path / "rotation.toml"
    variable = "MAIL_PASSWORD"
    config.write_text(text.replace(f'env = "{credential("smtp").env}"', f'env = "{variable}"'))
    rotation_log.rotated("twilio", NOW - 95 * DAY)
    env = write_env(tmp_path / ".env", smtp, password_env=variable)
    args = ("--alert-email", "admin@example.com", "--env-file", str(env), "--smtp-ca-file", str(smtp.ca_file))
    code, _, err = status(capsys, monitoring_dsn, *args)
    assert code == 3 and "lacks" in err  # the built-in registry names another variable
    code, _, err = status(capsys, monitoring_dsn, "--config", str(config), *args)
    assert code == 2, err
    assert len(smtp.mailbox.messages) == 1
