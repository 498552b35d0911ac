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
import re
import shlex
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from pathlib import Path

import psycopg
import pytest
from pytest_bdd.parser import FeatureParser

from rotation.core import envfile, state
from rotation.core.database import connect, key_ref
from rotation.core.keys import generate_key
from rotation.core.secret import Secret
from rotation.emergency.incident import ledger_path, parse_iso
from rotation.evidence.incident import EARLIER_FOLDERS, INCIDENT_ITEM
from rotation.evidence.pdf import CHROMIUM_ENV
from rotation.evidence.recorder import strip_url_passwords
from rotation_pytest.emergency import NEXT_STEP_ITEM
from tests.emergency.test_emergency_command import CONFIG, StandInLive, stand_in_live  # noqa: F401 (fixture)
from tests.harness import PROJECT, newest_run_folder, read_evidence, step_results

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

    def argv(self, *extra: str) -> list[str]:
        """The operator's command (after `rotation`) for this incident: the DB key and SMTP compromised."""
        options = tuple(o for o in self.live.options if not o.startswith("--compromised="))
        return ["emergency", *options, f"--compromised={DB_KEY.type},{SMTP.type}", *extra]

    def run(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`rotation <argv>` as the operator runs it; no PDF print (its cost is the print's, tested elsewhere)."""
        environ = {**os.environ, "PYTHONPATH": str(PROJECT), "SMTP_NEW_PASSWORD": self.new_password.reveal(),
                   CHROMIUM_ENV: str(self.live.reports / "no-chromium"), **(env or {})}
        return subprocess.run([sys.executable, "-m", "rotation", *argv], cwd=self.live.reports, env=environ,
                              capture_output=True, text=True, timeout=300, check=False)

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
    ran: dict[str, list[str]] = {}  # the steps the kill -9 chains below cover are the steps a run takes
    for step in step_results(folder):
        ran.setdefault(step.scenario, []).append(step.text)
    assert ran == incident_steps()


def test_a_revocation_made_only_after_a_failed_run_is_finished_by_the_rerun_without_rotating_the_db_key_again(
        drill: Drill) -> None:
    old = smtp_old(drill)
    first = drill.command("--revoke-wait=1")
    assert first.returncode != 0, (first.stdout + first.stderr)[-3000:]
    last = first.stdout.rstrip().splitlines()[-1]  # the one line, printed last: the same command finishes it
    assert last.startswith("incident CHG-911 NOT COMPLETE (") and f"{SMTP.type}: waiting for the operator" in last \
        and "run the same command again: rotation emergency " in last, first.stdout[-3000:]
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


# --- kill -9 after every step, then the command the killed run named ------------------------------------------------

FEATURES = PROJECT / "rotation_suite" / "features" / "emergency"
NEXT_STEP = re.compile(r"^incident CHG-911, run \d+ of it \(.*\): if this run ends before the incident is complete "
                       r"\(even killed\), run the same command again: (?P<command>rotation emergency .*)$",
                       re.MULTILINE)
CHAIN_MAX = 7  # kill points per chain: the chains run in parallel under xdist; a longer one would be the critical path


@dataclass(frozen=True)
class KillPoint:
    scenario: str  # as rendered (an Outline's Examples row filled in): ROTATION_TEST_KILL_SCENARIO
    step: str      # the step's text: ROTATION_TEST_KILL_AFTER

    def env(self) -> dict[str, str]:
        return {"PYTEST_ADDOPTS": "-p tests.faults", "ROTATION_TEST_KILL_AFTER": self.step,
                "ROTATION_TEST_KILL_SCENARIO": self.scenario}


def incident_steps(compromised: tuple[str, ...] = (DB_KEY.type, SMTP.type)) -> dict[str, list[str]]:
    """Every step `rotation emergency --compromised=<these>` runs, per scenario, as the feature files write them: the
    emergency features' scenarios (Outlines rendered for each Examples row) whose credential tag is one of these or
    who have none (access review, notification, post-incident). Read from the feature files, never typed here."""
    types = {c.type for c in CONFIG.credentials}
    found: dict[str, list[str]] = {}
    for path in sorted(FEATURES.glob("*.feature")):
        feature = FeatureParser(str(FEATURES), path.name).parse()
        for template in feature.scenarios.values():
            rows = [(e.tags, c) for e in template.examples for c in e.as_contexts()] or [(set(), {})]
            for tags, context in rows:
                tagged = (feature.tags | template.tags | tags) & types
                if tagged and not tagged & set(compromised):
                    continue
                scenario = template.render(context)
                found[scenario.name] = [step.name for step in scenario.steps]
    return found


FINISHING_STEP = 'the rotation is logged with reason "emergency"'  # its run marks the credential finished


def kill_chains() -> list[tuple[KillPoint, ...]]:
    """Every step of the incident as a kill point, in chains of at most CHAIN_MAX consecutive steps of one scenario.
    A chain ends at a credential's FINISHING_STEP: a run killed right after it has finished the credential, so the
    next run skips its scenario (never rotating it again) and cannot reach a later step of it; that step begins a
    chain of its own."""
    chains: list[tuple[KillPoint, ...]] = []
    for scenario, steps in incident_steps().items():
        cut = steps.index(FINISHING_STEP) + 1 if FINISHING_STEP in steps else len(steps)
        for segment in (steps[:cut], steps[cut:]):
            parts = -(-len(segment) // CHAIN_MAX)
            size = -(-len(segment) // parts) if parts else 1
            chains += [tuple(KillPoint(scenario, s) for s in segment[i:i + size])
                       for i in range(0, len(segment), size)]
    return chains


def _chain_id(chain: tuple[KillPoint, ...]) -> str:
    steps = incident_steps()[chain[0].scenario]
    first, last = steps.index(chain[0].step) + 1, steps.index(chain[-1].step) + 1
    slug = {f"Compromised {c.label}": c.type for c in (DB_KEY, SMTP)}.get(chain[0].scenario,
                                                                        chain[0].scenario.split()[0].lower())
    return f"{slug}-steps-{first}-{last}"


def test_every_step_of_the_incident_is_a_kill_point_once_and_each_names_one_step() -> None:
    steps = incident_steps()
    assert set(steps) == {f"Compromised {DB_KEY.label}", f"Compromised {SMTP.label}",
                          "Verify no unauthorized access over the review window",
                          "Notify stakeholders of the rotation and the review's findings",
                          "Audit the incident window and document the incident"}, sorted(steps)
    points = [p for chain in kill_chains() for p in chain]
    assert points == [KillPoint(sc, st) for sc, texts in steps.items() for st in texts]  # each step once, in order
    for scenario, texts in steps.items():  # the step text names one step of its scenario (faults kills at the first)
        assert len(set(texts)) == len(texts), scenario
    assert all(len(chain) <= CHAIN_MAX for chain in kill_chains())
    for credential in (DB_KEY, SMTP):  # each credential's scenario has the step that finishes it; a chain ends there
        assert FINISHING_STEP in steps[f"Compromised {credential.label}"], credential.type
    assert all(p.step != FINISHING_STEP for chain in kill_chains() for p in chain[:-1])


def _smtp_login(env_file: Path, password: Secret) -> int:
    """The SMTP server's answer to AUTH with `password` (STARTTLS verified against the stand-in's CA)."""
    env = envfile.read_env(env_file)
    context = ssl.create_default_context(cafile=env["SMTP_CA_FILE"])
    with smtplib.SMTP(env["SMTP_HOST"], int(env["SMTP_PORT"]), timeout=30) as server:
        server.starttls(context=context)
        try:
            return int(server.login(env["SMTP_USERNAME"], password.reveal())[0])
        except smtplib.SMTPAuthenticationError as exc:
            return int(exc.smtp_code)


def _opened_by(dsn: str, key: Secret) -> tuple[int, int]:
    """How many of the pgcrypto-encrypted values `key` opens, of how many."""
    counted = [(f"count({c}) FILTER (WHERE rotation_runbook.try_decrypt({c}, {key_ref('k')}) IS NOT NULL)",
                f"count({c})", e.table) for e in CONFIG.encrypted_data if e.kind == "pgcrypto" for c in e.columns]
    opened = total = 0
    with connect(dsn, keys={"k": key}) as conn:
        for opens, values, table in counted:
            row = conn.execute(f"SELECT {opens}, {values} FROM {table}").fetchone()  # noqa: S608 (config's names)
            opened, total = opened + int(row[0]), total + int(row[1])
    return opened, total


def _old_db_key(env_file: Path, fingerprint: str) -> Secret:
    for backup in envfile.backups(env_file):
        value = envfile.read_env(backup).get(DB_KEY.env, "")
        if value and Secret(value).fingerprint == fingerprint:
            return Secret(value)
    raise AssertionError(f"no backup of .env holds the compromised DB key {fingerprint}")


@dataclass
class Chain:
    """The runs of one chain: each killed right after its step, each next one the command the killed run named."""

    drill: Drill
    argv: list[str]  # the operator's command, after `rotation`
    ledgers: list[dict[str, object]] = field(default_factory=list)
    said: list[str] = field(default_factory=list)  # each killed run's one line
    took_over: int = 0

    def run(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The command; refused by the lock naming --take-over-lock (the documented way after a kill -9), again
        with it."""
        done = self.drill.run(argv, env)
        out = done.stdout + done.stderr
        if done.returncode == 1 and "refused" in out and "--take-over-lock" in out:
            self.took_over += 1
            done = self.drill.run([*argv, "--take-over-lock"], env)
        self.check_one_incident()
        return done

    def named(self, killed: subprocess.CompletedProcess[str]) -> list[str]:
        """The next step the killed run named (its one line), as an argv: the operator's own command again (its DSN's
        password masked: supplied again as before)."""
        lines = list(NEXT_STEP.finditer(killed.stdout))
        assert len(lines) == 1, killed.stdout[-3000:]
        self.said.append(lines[0].group(0))
        words = shlex.split(lines[0].group("command"))
        assert words[:2] == ["rotation", "emergency"], words[:2]
        dsn = next(w for w in self.argv if w.startswith("--dsn="))
        assert strip_url_passwords(dsn) in words, "the named command is not this incident's database"
        argv = [dsn if w == strip_url_passwords(dsn) else w for w in words[1:]]
        assert sorted(argv) == sorted(self.argv), "the named command is not the operator's own"
        return argv

    def check_one_incident(self) -> None:
        """After every run: one incident, its times never rewritten, nothing rotated twice."""
        ledger = self.drill.ledger()
        if self.ledgers:
            first, before = self.ledgers[0], self.ledgers[-1]
            assert ledger["started_at"] == first["started_at"] and ledger["change_id"] == "CHG-911"
            assert len(ledger["runs"]) == len(before["runs"]) + 1  # type: ignore[arg-type]
            events = ledger["events"]
            assert events[:len(before["events"])] == before["events"], "earlier times rewritten"  # type: ignore
            for credential, moment in ((DB_KEY.type, "outage_from"), (SMTP.type, "revoked_at")):
                was = before["outcomes"].get(credential, {}).get(moment)  # type: ignore[union-attr]
                if was:
                    assert ledger["outcomes"][credential][moment] == was, (credential, moment)  # type: ignore
        assert self.drill.rows(DB_KEY.type) <= 1 and self.drill.rows(SMTP.type) <= 1, "rotated twice"
        self.ledgers.append(ledger)


@pytest.mark.parametrize("chain", kill_chains(), ids=_chain_id)
def test_kill_9_right_after_each_step_then_the_command_it_named_finishes_one_incident(
        drill: Drill, chain: tuple[KillPoint, ...]) -> None:
    """Each run is killed right after its step; the next run is the command the killed run named (it must get past
    that step: it is killed at the next, or finishes); the last finishes the incident."""
    old_smtp = smtp_old(drill)
    runs = Chain(drill, drill.argv("--revoke-wait=5"))
    console: list[dt.datetime] = []
    argv = runs.argv
    with operator_at_the_console(drill, old_smtp, console):
        for n, point in enumerate(chain, 1):
            killed = runs.run(argv, point.env())
            assert killed.returncode == -signal.SIGKILL, (
                f"run {n} was to die right after '{point.step}' ({point.scenario}) but ended with "
                f"{killed.returncode}:\n{(killed.stdout + killed.stderr)[-3000:]}")
            argv = runs.named(killed)
        done = runs.run(argv)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    if chain[-1].step == FINISHING_STEP:  # the run after it found the credential finished: not rotated again
        assert "finished by an earlier run of this incident" in out and "not rotated again" in out, out[-3000:]
    last = done.stdout.rstrip().splitlines()[-1]  # the run's one line, printed last
    assert last.startswith("incident CHG-911 complete (") and last.endswith("): nothing left to do"), out[-2000:]
    assert f"{DB_KEY.type}: revoked and replaced" in last and f"{SMTP.type}: revoked and replaced" in last, last
    assert runs.took_over == 0, "the command a killed run named was refused by the lock it left"
    ledger = drill.ledger()
    assert len(ledger["runs"]) == len(chain) + 1 and len(console) == 1  # type: ignore[arg-type]
    db, smtp = (ledger["outcomes"][c.type] for c in (DB_KEY, SMTP))  # type: ignore[index]
    assert db["finished"] and smtp["finished"] and drill.rows(DB_KEY.type) == drill.rows(SMTP.type) == 1
    # the compromised credentials are refused; their replacements work
    assert _smtp_login(drill.live.deployment.env_file, old_smtp) == 535
    assert _smtp_login(drill.live.deployment.env_file, drill.new_password) == 235
    old_key = _old_db_key(drill.live.deployment.env_file, db["old_credential"])
    new_key = envfile.get_secret(drill.live.deployment.env_file, DB_KEY.env)
    opened, total = _opened_by(drill.live.deployment.dsn, new_key)
    assert total > 0 and opened == total and _opened_by(drill.live.deployment.dsn, old_key) == (0, total)
    # the outage from the first stop (in whichever run) to healthy on the new key
    events = [(parse_iso(e["at"]), e["what"]) for e in ledger["events"]]  # type: ignore[index,union-attr]
    stops = [at for at, what in events if what.startswith(f"{DB_KEY.type}: application stopped")]
    assert parse_iso(db["outage_from"]) == min(stops)
    assert db["time_to_restore_s"] == pytest.approx((parse_iso(db["restored_at"]) - min(stops)).total_seconds(),
                                                    abs=0.01)
    assert parse_iso(smtp["outage_from"]) == parse_iso(smtp["revoked_at"])
    # one incident record: the last folder names every earlier run's sealed folder with its digest and verdict
    folder = newest_run_folder(drill.live.reports)
    assert folder is not None and drill.live.verify(folder).returncode == 0
    (item,) = [e["value"] for e in read_evidence(folder) if e.get("name") == INCIDENT_ITEM]
    earlier = item[EARLIER_FOLDERS]  # type: ignore[index]
    assert [r["run id"] for r in earlier] == [r["run_id"] for r in ledger["runs"][:-1]]  # type: ignore[index]
    assert all(len(r["manifest sha256"]) == 64 and r["verdict"] != "-" for r in earlier), earlier
    for row, line in zip(earlier, runs.said, strict=True):  # each killed run's folder, sealed from its journal, too
        sealed = read_evidence(drill.live.reports / row["folder"])
        named = [e["value"] for e in sealed if e.get("name") == NEXT_STEP_ITEM]
        assert named == [line], (row["folder"], named)


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
