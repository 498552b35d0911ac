"""`rotation status` against a seeded rotation log in real PostgreSQL: exit codes, JSON, table, alert mail."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rotation.cli import main
from tests.monitoring.conftest import NOW, RotationLog
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
    assert out.count("CURRENT") == 4


def test_exit_1_when_any_due(rotation_log: RotationLog, monitoring_dsn: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.all_rotated(NOW - 10 * DAY, ("db_encryption_key", "twilio_token", "smtp_password"))
    rotation_log.rotated("whatsapp_token", NOW - 85 * DAY)
    rotation_log.rotated("whatsapp_token", NOW - 85 * DAY - dt.timedelta(hours=1))  # older: not used
    code, out, _ = status(capsys, monitoring_dsn)
    assert code == 1
    assert "WARNING: whatsapp_token credentials rotation due in 5 days" in out


def test_exit_2_when_any_expired(rotation_log: RotationLog, monitoring_dsn: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.all_rotated(NOW - 85 * DAY)
    rotation_log.rotated("db_encryption_key", NOW - 10 * DAY)
    rotation_log.rotated("twilio_token", NOW - 91 * DAY)  # older than the 85-day row: that one still counts
    rotation_log.rotated("smtp_password", NOW - 3 * DAY)
    code, _, _ = status(capsys, monitoring_dsn)
    assert code == 1
    rotation_log.conn.execute("TRUNCATE security_credential_rotations")
    rotation_log.all_rotated(NOW - 10 * DAY, ("db_encryption_key", "whatsapp_token", "smtp_password"))
    rotation_log.rotated("twilio_token", NOW - 90 * DAY)
    code, out, _ = status(capsys, monitoring_dsn)
    assert code == 2
    assert "CRITICAL: twilio_token credentials have EXPIRED!" in out


def test_exit_2_when_never_rotated(rotation_log: RotationLog, monitoring_dsn: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.all_rotated(NOW - 10 * DAY, ("db_encryption_key", "whatsapp_token", "twilio_token"))
    code, out, _ = status(capsys, monitoring_dsn)
    assert code == 2
    assert "NEVER ROTATED" in out
    assert "CRITICAL: smtp_password credentials have EXPIRED! (never rotated" in out


def test_empty_log_is_expired_not_fine(rotation_log: RotationLog, monitoring_dsn: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = status(capsys, monitoring_dsn)
    assert code == 2
    assert out.count("NEVER ROTATED") == 4


def test_json_parses_and_has_the_runbook_fields(rotation_log: RotationLog, monitoring_dsn: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.rotated("db_encryption_key", NOW - 83 * DAY)
    rotation_log.rotated("whatsapp_token", NOW - 1 * DAY)
    rotation_log.rotated("twilio_token", NOW - 90 * DAY)
    code, out, _ = status(capsys, monitoring_dsn, "--json")
    doc = json.loads(out)
    assert code == doc["exit_code"] == 2
    assert doc["as_of"] == "2026-11-25T06:00:00+00:00"
    creds = doc["credentials"]
    assert set(creds) == {"db_encryption_key", "whatsapp_token", "twilio_token", "smtp_password"}
    for info in creds.values():
        assert FIELDS <= set(info)
    key = creds["db_encryption_key"]
    assert key == {**key, "last_rotated_at": "2026-09-03T06:00:00+00:00",
                   "rotation_due_at": "2026-12-02T06:00:00+00:00", "days_until_rotation": 7,
                   "is_rotation_due": True, "is_expired": False, "state": "due"}
    assert creds["twilio_token"]["is_expired"] is True and creds["twilio_token"]["days_until_rotation"] == 0
    never = creds["smtp_password"]
    assert never == {**never, "last_rotated_at": None, "rotation_due_at": None, "days_until_rotation": None,
                     "is_expired": True, "never_rotated": True}


def test_schedule_file_is_honoured(rotation_log: RotationLog, monitoring_dsn: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.all_rotated(NOW - 40 * DAY)
    assert status(capsys, monitoring_dsn)[0] == 0
    f = tmp_path / "schedule.yaml"
    f.write_text("schedule:\n  smtp_password: {interval_days: 45, warning_days: 7}\n")
    code, out, _ = status(capsys, monitoring_dsn, "--schedule", str(f))
    assert code == 1
    assert "WARNING: smtp_password credentials rotation due in 5 days" in out


def test_real_clock_and_console_entry_point(rotation_log: RotationLog, monitoring_dsn: str) -> None:
    """Through `python -m rotation` with the DSN from ROTATION_DSN and the real clock."""
    now = dt.datetime.now(dt.UTC)
    rotation_log.all_rotated(now - 30 * DAY)
    env = {**os.environ, "ROTATION_DSN": monitoring_dsn}
    run = subprocess.run([sys.executable, "-m", "rotation", "status"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    rotation_log.rotated("twilio_token", None)
    rotation_log.conn.execute("UPDATE security_credential_rotations SET rotated_at = %s "
                              "WHERE credential_type = 'twilio_token'", (now - 100 * DAY,))
    run = subprocess.run([sys.executable, "-m", "rotation", "status", "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert json.loads(run.stdout)["credentials"]["twilio_token"]["days_until_rotation"] == -10


def test_no_database_is_an_error_not_a_pass(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROTATION_DSN", raising=False)
    assert main(["status"]) == 3
    assert main(["status", "--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=2"]) == 3
    assert "cannot read security_credential_rotations" in capsys.readouterr().err


def write_env(path: Path, smtp: SmtpServer, password: str | None = None) -> Path:
    path.write_text(f"SMTP_HOST={smtp.host}\nSMTP_PORT={smtp.port}\nSMTP_USERNAME={smtp.username}\n"
                    f"SMTP_PASSWORD={password or smtp.password}\n")
    path.chmod(0o600)
    return path


def test_alert_email_carries_the_runbook_lines(rotation_log: RotationLog, monitoring_dsn: str,
                                               smtp: SmtpServer, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rotation_log.rotated("db_encryption_key", NOW - 83 * DAY)
    rotation_log.rotated("whatsapp_token", NOW - 88 * DAY)  # older row: the 10-day one wins
    rotation_log.rotated("whatsapp_token", NOW - 10 * DAY)
    rotation_log.rotated("twilio_token", NOW - 95 * DAY)
    env = write_env(tmp_path / ".env", smtp)
    code, out, err = status(capsys, monitoring_dsn, "--alert-email", "admin@eventplanning.example.com",
                            "--env-file", str(env), "--smtp-ca-file", str(smtp.ca_file))
    assert code == 2, err
    expected = ["WARNING: db_encryption_key credentials rotation due in 7 days",
                "CRITICAL: twilio_token credentials have EXPIRED!",
                "CRITICAL: smtp_password credentials have EXPIRED! (never rotated: no row in "
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
            env.write_text(f"SMTP_HOST={smtp.host}\nSMTP_PORT={smtp.port}\nSMTP_PASSWORD={smtp.password}\n")
        code, out, err = status(capsys, monitoring_dsn, "--alert-email", "admin@example.com", "--env-file",
                                str(env), "--smtp-ca-file", str(ca))
    assert code == 3
    assert "alert e-mail NOT sent" in err
    assert server.mailbox.messages == []
    assert smtp.password not in out + err


def test_ca_file_from_env(rotation_log: RotationLog, monitoring_dsn: str, smtp: SmtpServer, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    """SMTP_CA_FILE in .env stands in for --smtp-ca-file (staging's .env carries it)."""
    rotation_log.rotated("twilio_token", NOW - 95 * DAY)
    env = write_env(tmp_path / ".env", smtp)
    env.write_text(env.read_text() + f"SMTP_CA_FILE={smtp.ca_file}\n")
    code, _, err = status(capsys, monitoring_dsn, "--alert-email", "admin@example.com", "--env-file", str(env))
    assert code == 2, err
    assert len(smtp.mailbox.messages) == 1


def test_system_trust_store_rejects_a_private_ca(rotation_log: RotationLog, monitoring_dsn: str, smtp: SmtpServer,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a CA file the system store is used, and a self-signed certificate is refused: verification is on."""
    rotation_log.rotated("twilio_token", NOW - 95 * DAY)
    env = write_env(tmp_path / ".env", smtp)
    code, _, err = status(capsys, monitoring_dsn, "--alert-email", "admin@example.com", "--env-file", str(env))
    assert code == 3
    assert "not verified" in err
    assert smtp.mailbox.messages == []
