"""Issue 24's drill, through the operator's `rotation emergency` (live against the stand-ins, in a session of its own:
no terminal, so the SMTP revocation is waited for up to --revoke-wait): the DB key and the SMTP password are
compromised; the SMTP stand-in keeps the old password valid until its console revokes it.

  - a scripted operator revokes it at the console while the tool waits: the run completes, one incident record, the
    notification names both, and the timeline's revocation is the console's (first refusal seen after it, within one
    poll of it), with "asked" before it;
  - nobody revokes in time: the first run fails at the revoke step and records no revocation; the operator revokes;
    the rerun finishes SMTP without rotating the DB key again (one DB-key row in total), keeps naming the original
    compromised credentials and sends an UPDATE saying the incident is complete;
  - kill -9 right after a step, then the same command: one incident, the outage measured across runs;
  - a second shell during the incident is refused, naming the holder, and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from email import message_from_bytes

import psycopg
import pytest

from rotation.core import state
from rotation.core.keys import generate_key
from rotation.core.secret import Secret
from rotation.emergency.incident import ledger_path, parse_iso
from tests.emergency.test_emergency_command import CONFIG, StandInLive, stand_in_live  # noqa: F401 (fixture)
from tests.harness import PROJECT, newest_run_folder, step_results

DB_KEY, SMTP = CONFIG.credential("database"), CONFIG.credential("smtp")
SMTP_REVOKE_STEP = "the compromised credential is revoked at the provider and a replacement issued"
POLL_S = 1.0  # --revoke-wait=5 on the live path asks every min(10, 5/5) = 1 s


@dataclass
class Drill:
    live: StandInLive
    new_password: Secret

    def command(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        options = tuple(o for o in self.live.options if not o.startswith("--compromised="))
        live = replace(self.live, options=(*options, f"--compromised={DB_KEY.type},{SMTP.type}", *extra))
        return live.command({"SMTP_NEW_PASSWORD": self.new_password.reveal(), **(env or {})})

    def ledger(self) -> dict[str, object]:
        return json.loads(ledger_path(self.live.deployment.env_file).read_text())  # type: ignore[no-any-return]

    def rows(self, credential: str) -> int:
        with psycopg.connect(self.live.deployment.dsn) as conn:
            row = conn.execute("SELECT count(*) FROM security_credential_rotations WHERE credential_type = %s AND "
                               "rotation_reason = 'emergency'", (credential,)).fetchone()
        return int(row[0]) if row else 0

    def notifications(self) -> list[str]:
        return [str(message_from_bytes(m["data"])["Subject"]) for m in list(self.live.standins.smtp.messages)
                if "Emergency credential rotation" in str(message_from_bytes(m["data"])["Subject"])]


@pytest.fixture
def drill(stand_in_live: StandInLive) -> Drill:  # noqa: F811
    password = Secret(generate_key().reveal())
    stand_in_live.standins.smtp.add_password(password)  # the operator created it at the provider's console
    return Drill(stand_in_live, password)


@contextmanager
def operator_at_the_console(d: Drill, old: Secret, revoked: list[dt.datetime]) -> Iterator[None]:
    """Revokes the old SMTP password at the stand-in's console once the run has persisted the replacement (so the
    tool is asking for the revocation and waiting), and notes when."""
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            current = state.load(d.live.deployment.env_file, SMTP.type)
            if current is not None and current.pending_fp and current.revoked_at is None:
                time.sleep(0.3)
                d.live.standins.smtp.revoke(old)
                revoked.append(dt.datetime.now(dt.UTC))
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def smtp_old(d: Drill) -> Secret:
    from rotation.core import envfile

    return envfile.get_secret(d.live.deployment.env_file, SMTP.env)


def test_the_operator_revokes_while_the_tool_waits_and_the_incident_completes_as_one_record(drill: Drill) -> None:
    old = smtp_old(drill)
    console: list[dt.datetime] = []
    detected = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    with operator_at_the_console(drill, old, console):
        done = drill.command("--revoke-wait=5", f"--detected-at={detected.isoformat()}")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    assert "time-to-revoke measured from --detected-at" in out and "1-hour target: met" in out, out[-3000:]
    assert len(console) == 1, "the scripted operator never saw the tool waiting"
    ledger = drill.ledger()
    smtp = ledger["outcomes"][SMTP.type]  # type: ignore[index]
    revoked_at = parse_iso(smtp["revoked_at"])
    assert console[0] <= revoked_at <= console[0] + dt.timedelta(seconds=POLL_S + 5), (console, revoked_at)
    events = [(parse_iso(e["at"]), e["what"]) for e in ledger["events"]]  # type: ignore[index,union-attr]
    asked = [at for at, what in events if what.startswith(f"{SMTP.type}: the operator asked to revoke")]
    first_refused = [at for at, what in events if "refusal of the compromised credential first observed" in what]
    assert len(asked) == 1 and asked[0] < console[0] and first_refused == [revoked_at], events
    assert not any("confirmed the revocation" in what for _, what in events), "nobody confirmed at a terminal"
    assert smtp["status"] == ledger["outcomes"][DB_KEY.type]["status"] == "revoked and replaced"  # type: ignore[index]
    assert smtp["old_credential"] == old.fingerprint
    assert smtp["time_to_revoke_s"] >= 600 and smtp["time_to_revoke_from"] == "--detected-at"
    assert drill.rows(DB_KEY.type) == drill.rows(SMTP.type) == 1
    (subject,) = drill.notifications()
    assert "(complete)" in subject and DB_KEY.type in subject and SMTP.type in subject, subject
    folder = newest_run_folder(drill.live.reports)
    assert folder is not None and drill.live.verify(folder).returncode == 0


def test_a_revocation_made_only_after_a_failed_run_is_finished_by_the_rerun_without_rotating_the_db_key_again(
        drill: Drill) -> None:
    old = smtp_old(drill)
    first = drill.command("--revoke-wait=1")
    assert first.returncode != 0, (first.stdout + first.stderr)[-3000:]
    folder = newest_run_folder(drill.live.reports)
    assert folder is not None
    failed = [s for s in step_results(folder) if s.status == "failed"]
    assert failed and failed[0].text == SMTP_REVOKE_STEP, failed
    assert "not revoked: still accepted" in (failed[0].error or ""), failed[0].error
    ledger = drill.ledger()
    assert ledger["outcomes"][SMTP.type]["revoked_at"] is None  # type: ignore[index]
    assert ledger["outcomes"][SMTP.type]["status"].startswith("waiting for the operator")  # type: ignore[index]
    assert drill.rows(DB_KEY.type) == 1 and drill.rows(SMTP.type) == 0
    first_subject = drill.notifications()[-1]
    assert "(in progress)" in first_subject and SMTP.type in first_subject, first_subject
    db_key_fp = ledger["outcomes"][DB_KEY.type]["old_credential"]  # type: ignore[index]

    drill.live.standins.smtp.revoke(old)  # the operator, at the console, afterwards
    second = drill.command("--revoke-wait=1")
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]
    ledger = drill.ledger()
    assert drill.rows(DB_KEY.type) == 1, "the DB key was rotated a second time"
    assert ledger["outcomes"][DB_KEY.type]["old_credential"] == db_key_fp  # type: ignore[index]
    assert ledger["outcomes"][SMTP.type]["old_credential"] == old.fingerprint  # type: ignore[index]
    assert len(ledger["runs"]) == 2 and drill.rows(SMTP.type) == 1  # type: ignore[arg-type]
    update = drill.notifications()[-1]
    assert update.startswith("[SECURITY] UPDATE Emergency credential rotation CHG-911 (complete)"), update


@pytest.mark.parametrize("kill_after", [
    SMTP_REVOKE_STEP,
    "the application services are stopped so that nothing reads with the compromised key",
    "all sensitive data is re-encrypted under the replacement key",
], ids=["smtp-revoked", "app-stopped", "reencrypted"])
def test_a_kill_at_a_step_then_the_same_command_is_one_incident_with_the_outage_measured_across_runs(
        drill: Drill, kill_after: str) -> None:
    console: list[dt.datetime] = []
    with operator_at_the_console(drill, smtp_old(drill), console):
        killed = drill.command("--revoke-wait=5", env={"PYTEST_ADDOPTS": "-p tests.faults",
                                                       "ROTATION_TEST_KILL_AFTER": kill_after})
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-3000:]
    before = drill.ledger()
    resumed = drill.command("--revoke-wait=1")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-5000:]
    ledger = drill.ledger()
    assert len(ledger["runs"]) == 2  # type: ignore[arg-type]
    assert ledger["started_at"] == before["started_at"]
    assert [e for e in ledger["events"] if e in before["events"]] == before["events"], "earlier times rewritten"  # type: ignore[operator,union-attr]
    assert drill.rows(DB_KEY.type) == drill.rows(SMTP.type) == 1
    db = ledger["outcomes"][DB_KEY.type]  # type: ignore[index]
    if db["outage_from"] and before["outcomes"].get(DB_KEY.type, {}).get("outage_from"):  # type: ignore[union-attr]
        assert db["outage_from"] == before["outcomes"][DB_KEY.type]["outage_from"]  # type: ignore[index]
        outage = parse_iso(db["restored_at"]) - parse_iso(db["outage_from"])
        assert db["time_to_restore_s"] == pytest.approx(outage.total_seconds(), abs=0.01)
        assert parse_iso(db["outage_from"]) < parse_iso(ledger["runs"][1]["started_at"])  # type: ignore[index]


def test_a_second_shell_on_the_incident_is_refused_naming_the_holder_and_changes_nothing(drill: Drill) -> None:
    """The first shell waits for the operator (nobody revokes yet); a second shell started meanwhile is refused."""
    env_file = drill.live.deployment.env_file
    options = tuple(o for o in drill.live.options if not o.startswith("--compromised="))
    args = [sys.executable, "-m", "rotation", "emergency", *options, f"--compromised={SMTP.type}", "--revoke-wait=20"]
    environ = {**os.environ, "PYTHONPATH": str(PROJECT), "SMTP_NEW_PASSWORD": drill.new_password.reveal()}
    first = subprocess.Popen(args, cwd=drill.live.reports, env=environ, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the first shell holds the lock and waits at the revocation
            current = state.load(env_file, SMTP.type)
            if current is not None and current.pending_fp:
                break
            time.sleep(0.1)
        before = env_file.read_bytes()
        second = drill.command("--revoke-wait=1")
        out = second.stdout + second.stderr
        assert second.returncode != 0, out[-3000:]
        assert "emergency refused: another rotation holds the run lock of this database" in out, out[-3000:]
        assert "ops (change CHG-911, emergency rotation)" in out, out[-3000:]
        assert env_file.read_bytes() == before and drill.rows(DB_KEY.type) == 0
    finally:
        drill.live.standins.smtp.revoke(smtp_old(drill))  # let the first shell finish
        first.wait(timeout=120)
