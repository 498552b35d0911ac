"""Live guardrails and the plan: a live run without confirmation, or with staging defaults, changes nothing and exits
non-zero with a clear message; `--dry-run` changes nothing; `--compromised` and `-m emergency` select exactly. The
operator's `rotation emergency` has the same guardrails as `pytest -m emergency --target live`: it runs the same
features through the same guard."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from rotation.core.config import default_config
from rotation.core.database import apply_runbook_schema
from rotation.core.keys import generate_key
from rotation.emergency import plan as emergency
from staging.crm import apply_crm_schema
from staging.postgres import StagingServer, free_port
from staging.seed import seed_clients
from staging.world import write_env
from tests.harness import PROJECT, newest_run_folder, read_evidence, step_results

CONFIG = default_config()
SMTP = CONFIG.credential("smtp")
DB_KEY = next(c for c in CONFIG.credentials if c.provider == "database")


@dataclass(frozen=True)
class LiveLike:
    dsn: str
    env_file: Path
    markers: Path

    def options(self, *extra: str) -> list[str]:
        """The options an operator names the live systems with (the same for pytest and `rotation emergency`)."""
        touch = f"touch {self.markers}/"
        return [f"--dsn={self.dsn}", f"--env-file={self.env_file}", f"--app-start={touch}started",
                f"--app-stop={touch}stopped", f"--app-restart={touch}restarted", f"--app-reload={touch}reloaded",
                "--health-url=http://127.0.0.1:9/health", *extra]

    def args(self, *extra: str) -> list[str]:
        return ["--target", "live", *self.options(*extra)]

    def unchanged(self, env_before: bytes) -> None:
        assert self.env_file.read_bytes() == env_before, ".env was changed"
        assert not list(self.markers.iterdir()), f"app commands ran: {list(self.markers.iterdir())}"
        assert not list(self.env_file.parent.glob(".env.backup.*")), "a backup was written"
        assert not list(self.env_file.parent.glob(".rotation-*")), "a rotation state was written"
        with psycopg.connect(self.dsn) as conn:
            assert conn.execute("SELECT count(*) FROM security_credential_rotations").fetchone()[0] == 0


@pytest.fixture(scope="module")
def live_dsn(pg: StagingServer) -> Iterator[str]:
    """A database named like a production one (the guard refuses staging's rotation_scratch_* names)."""
    name = f"eventdb_{secrets.token_hex(4)}"
    with psycopg.connect(pg.admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(pg.admin_dsn, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            apply_crm_schema(conn)
            apply_runbook_schema(conn)
        seed_clients(dsn, generate_key().reveal(), 20)
        yield dsn
    finally:
        with psycopg.connect(pg.admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def live(live_dsn: str, tmp_path: Path) -> LiveLike:
    (tmp_path / "app").mkdir()
    (tmp_path / "markers").mkdir()
    env_file = tmp_path / "app" / ".env"
    write_env(env_file, {"DATABASE_URL": live_dsn, DB_KEY.env: generate_key(), "SMTP_HOST": "smtp.gmail.com",
                         "SMTP_PORT": "587", "SMTP_USERNAME": "crm@eventplanning.io", SMTP.env: generate_key()})
    return LiveLike(live_dsn, env_file, tmp_path / "markers")


def _environ(env: dict[str, str] | None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != emergency.CONFIRM_ENV}
    return {**environ, "PYTHONPATH": str(PROJECT), **(env or {})}


def pytest_run(*args: str, env: dict[str, str] | None = None,
               timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """The suite in a subprocess."""
    return subprocess.run([sys.executable, "-m", "pytest", *args], cwd=PROJECT, env=_environ(env),
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def rotation_emergency(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The operator's command, from another directory."""
    return subprocess.run([sys.executable, "-m", "rotation", "emergency", *args], cwd="/", env=_environ(env),
                          capture_output=True, text=True, timeout=120, check=False)


CHANGE = ("--change-id", "CHG-4711", "--approver", "ciso@eventplanning.io")
POLICY = Path(__file__).with_name("review-policy.yaml")
STAKEHOLDERS = ("--notify-security", "sec@eventplanning.io", "--notify-sysadmins", "ops@eventplanning.io",
                "--notify-compliance", "dpo@eventplanning.io")
COMPLETE = (*CHANGE, "--compromised", f"smtp,{DB_KEY.type}", *STAKEHOLDERS, f"--review-policy={POLICY}",
            "-m", "emergency")


def test_live_without_confirmation_prints_the_plan_changes_nothing_and_exits_non_zero(live: LiveLike) -> None:
    before = live.env_file.read_bytes()
    done = pytest_run(*live.args(*COMPLETE))
    out = done.stdout + done.stderr
    assert done.returncode == 4, out[-3000:]
    assert "EMERGENCY ROTATION PLAN  target=live  change=CHG-4711" in out
    assert f"1. {SMTP.type} @ SMTP smtp.gmail.com:587" in out
    assert f"2. {DB_KEY.type} @ PostgreSQL" in out
    assert "NOT CONFIRMED: nothing was changed" in out and "--confirm-live" in out
    assert "passed" not in out.splitlines()[-1]
    live.unchanged(before)


def test_live_without_change_id_or_approver_is_refused_even_when_confirmed(live: LiveLike) -> None:
    before = live.env_file.read_bytes()
    done = pytest_run(*live.args("--compromised", "smtp", "-m", "emergency"), env={emergency.CONFIRM_ENV: "yes"})
    out = done.stdout + done.stderr
    assert done.returncode == 4, out[-3000:]
    assert "--target live needs --approver and --change-id" in out
    live.unchanged(before)


def test_live_without_stakeholders_or_review_policy_is_refused_even_when_confirmed(live: LiveLike) -> None:
    before = live.env_file.read_bytes()
    done = pytest_run(*live.args(*CHANGE, "--compromised", "smtp", "-m", "emergency", "--confirm-live"))
    out = done.stdout + done.stderr
    assert done.returncode == 4, out[-3000:]
    assert "LIVE RUN REFUSED; nothing was changed" in out
    assert "no notification recipients: set [stakeholders] in the configuration or pass --notify-security" in out
    assert "a live access review needs --review-policy FILE" in out
    live.unchanged(before)


def test_live_refuses_staging_defaults(live: LiveLike) -> None:
    with live.env_file.open("a") as f:
        f.write("TWILIO_API_BASE=http://127.0.0.1:8123\nSMTP_CA_FILE=/tmp/smtp-ca.pem\n")
    before = live.env_file.read_bytes()
    done = pytest_run(*live.args(*COMPLETE, "--confirm-live", "--notify-security", "sec@example.com"))
    out = done.stdout + done.stderr
    assert done.returncode == 4, out[-3000:]
    assert "TWILIO_API_BASE=http://127.0.0.1:8123 in .env" in out
    assert "SMTP_CA_FILE is set" in out
    assert "notification recipients at example domains: sec@example.com" in out
    live.unchanged(before)


def test_live_run_without_compromised_list_is_refused(live: LiveLike) -> None:
    args = [a for a in COMPLETE if a not in ("--compromised", f"smtp,{DB_KEY.type}")]
    done = pytest_run(*live.args(*args, "--confirm-live"))
    assert done.returncode == 4
    assert "a live emergency run needs --compromised" in done.stdout + done.stderr


def test_dry_run_on_live_prints_the_plan_and_changes_nothing(live: LiveLike) -> None:
    before = live.env_file.read_bytes()
    done = pytest_run(*live.args(*COMPLETE, "--confirm-live", "--dry-run"))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "EMERGENCY ROTATION PLAN" in out and "dry run: the plan above was printed; nothing was changed" in out
    live.unchanged(before)


def test_a_dry_run_says_what_the_live_run_would_refuse_and_exits_non_zero(live: LiveLike) -> None:
    """The operator rehearsing the command learns at the dry run, not at the real one, that it would be refused."""
    before = live.env_file.read_bytes()
    done = pytest_run(*live.args(*CHANGE, "--compromised", "smtp", "-m", "emergency", "--dry-run"))
    out = done.stdout + done.stderr
    assert done.returncode == 4, out[-3000:]
    assert "EMERGENCY ROTATION PLAN" in out and "THE LIVE RUN WOULD BE REFUSED; nothing was changed" in out
    assert "a live access review needs --review-policy FILE" in out and "no notification recipients" in out
    live.unchanged(before)


def test_dry_run_in_staging_runs_no_scenario() -> None:
    done = pytest_run("-m", "emergency", "--dry-run")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert f"{len(CONFIG.credentials)}. {CONFIG.emergency_order[-1]} @ " in out and "nothing was changed" in out
    assert " passed" not in out and "EMERGENCY Compromised" not in out


def test_marker_selects_only_emergency_scenarios_and_compromised_narrows_them() -> None:
    everything = pytest_run("-m", "emergency", "--collect-only", "-q")
    ids = [line for line in everything.stdout.splitlines() if "::" in line]
    assert ids and all(i.startswith("rotation_suite/steps/test_emergency.py::") for i in ids), everything.stdout[-2000:]
    assert len([i for i in ids if "compromised" in i]) == len(CONFIG.credentials), ids
    narrowed = pytest_run("-m", "emergency", "--collect-only", "-q", "--compromised", "smtp")
    kept = [line for line in narrowed.stdout.splitlines() if "::" in line]
    assert [i.rsplit("[", 1)[-1] for i in kept if "compromised" in i] == [f"{SMTP.label}]"], kept
    assert any("unauthorized" in line for line in kept)
    bad = pytest_run("-m", "emergency", "--collect-only", "-q", "--compromised", "twilo")
    assert bad.returncode == 4 and "unknown credential 'twilo'" in bad.stdout + bad.stderr
    naive = pytest_run("-m", "emergency", "--collect-only", "-q", "--incident-start", "2026-11-25T06:00:00")
    assert naive.returncode == 4 and "--incident-start: give a UTC offset" in naive.stdout + naive.stderr


def test_emergency_rotations_run_in_the_configured_emergency_order(tmp_path: Path) -> None:
    reversed_order = tmp_path / "rotation.toml"
    text = (PROJECT / "rotation" / "core" / "rotation.toml").read_text()
    listed = ", ".join(f'"{t}"' for t in CONFIG.emergency_order)
    reversed_order.write_text(text.replace(listed, ", ".join(f'"{t}"' for t in reversed(CONFIG.emergency_order))))
    done = pytest_run("-m", "emergency", "--collect-only", "-q", f"--config={reversed_order}")
    labels = [line.rsplit("[", 1)[-1].rstrip("]") for line in done.stdout.splitlines() if "compromised" in line]
    rotations = [c.label for c in CONFIG.credentials if c.provider != "database"]
    in_file_order = [CONFIG.credential(t).label for t in reversed(CONFIG.emergency_order)]
    assert [label for label in labels if label in rotations] == [t for t in in_file_order if t in rotations], labels


def test_a_live_scheduled_run_gets_a_plan_and_the_same_guard(live: LiveLike) -> None:
    before = live.env_file.read_bytes()
    done = pytest_run(*live.args("--change-id", "CHG-2", "--approver", "ciso@eventplanning.io", "-m", "rotation",
                                 "-k", "scheduled"))
    out = done.stdout + done.stderr
    assert done.returncode == 4, out[-3000:]
    assert "PLAN  target=live  change=CHG-2" in out and "1. test_scheduled" in out
    assert "NOT CONFIRMED: nothing was changed" in out and "notification recipients" not in out
    live.unchanged(before)


# --- the operator's command ------------------------------------------------------------------------------------------

def test_rotation_emergency_without_confirmation_prints_the_plan_and_changes_nothing(live: LiveLike) -> None:
    before = live.env_file.read_bytes()
    done = rotation_emergency(*live.options(*CHANGE, "--compromised", "smtp", *STAKEHOLDERS,
                                            f"--review-policy={POLICY}"))
    out = done.stdout + done.stderr
    assert done.returncode == 4, out[-3000:]
    assert "EMERGENCY ROTATION PLAN  target=live  change=CHG-4711" in out
    assert f"1. {SMTP.type} @ SMTP smtp.gmail.com:587" in out and f"{DB_KEY.type} @" not in out
    assert "NOT CONFIRMED: nothing was changed" in out
    live.unchanged(before)


def test_rotation_emergency_refuses_what_the_guard_refuses(live: LiveLike) -> None:
    before = live.env_file.read_bytes()
    done = rotation_emergency(*live.options("--confirm-live", *CHANGE, *STAKEHOLDERS, f"--review-policy={POLICY}"))
    out = done.stdout + done.stderr
    assert done.returncode == 4, out[-3000:]
    assert "a live emergency run needs --compromised" in out
    unapproved = rotation_emergency(*live.options("--confirm-live", "--compromised", "smtp"))
    assert unapproved.returncode == 4 and "--target live needs --approver and --change-id" in \
        unapproved.stdout + unapproved.stderr
    live.unchanged(before)


def test_rotation_emergency_dry_run_changes_nothing(live: LiveLike) -> None:
    before = live.env_file.read_bytes()
    done = rotation_emergency(*live.options(*CHANGE, "--compromised", "all", *STAKEHOLDERS,
                                            f"--review-policy={POLICY}", "--confirm-live", "--dry-run"))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "dry run: the plan above was printed; nothing was changed" in out
    for n, credential in enumerate(CONFIG.emergency_order, start=1):
        assert f"  {n}. {credential} @ " in out
    live.unchanged(before)


def test_plan_order_and_parsing() -> None:
    order = CONFIG.emergency_order
    assert emergency.parse_compromised(",".join(reversed(order)), CONFIG, default_all=False) == order
    assert emergency.parse_compromised(None, CONFIG, default_all=True) == order
    assert emergency.parse_compromised(None, CONFIG, default_all=False) == ()
    assert emergency.parse_compromised("all", CONFIG, default_all=False) == order
    assert emergency.parse_compromised(SMTP.label, CONFIG, default_all=False) == (SMTP.type,)
    assert emergency.confirmed(False, {emergency.CONFIRM_ENV: "YES"})
    assert not emergency.confirmed(False, {emergency.CONFIRM_ENV: "1"})
    assert emergency.dsn_summary("postgresql://eventuser:hunter2-secret@db.internal:5433/eventdb") == \
        "db.internal:5433/eventdb as eventuser"


NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("start", "end", "detected", "refused"), [
    ("2026-11-25T06:00:00+00:00", "2026-11-25T05:00:00+00:00", None, "--incident-start (2026-11-25T06:00:00+00:00) is "
                                                                      "after --incident-end"),
    (None, None, "2026-11-25T09:30:00+00:00", "--detected-at: 2026-11-25T09:30:00+00:00 is in the future"),
    ("2026-11-26T06:00:00+00:00", None, None, "--incident-start: 2026-11-26T06:00:00+00:00 is in the future"),
    (None, None, "yesterday", "--detected-at: not an ISO-8601 date-time"),
], ids=["window-backwards", "detected-later-than-now", "incident-starts-tomorrow", "not-a-time"])
def test_the_incident_times_are_checked_before_anything_runs(start: str | None, end: str | None, detected: str | None,
                                                             refused: str) -> None:
    """A detection time later than now would make every time to revoke negative and every one-hour target "met"; a
    window that ends before it starts was found only by the post-incident step, after the rotations."""
    with pytest.raises(emergency.PlanError) as caught:
        emergency.incident_moments(start, end, detected, NOW)
    assert str(caught.value).startswith(refused), caught.value
    # the same times, told right, pass: a detection minutes after the machine's clock too (another machine's clock)
    emergency.incident_moments("2026-11-25T05:00:00+00:00", "2026-11-25T06:00:00+00:00", "2026-11-25T09:04:00+00:00",
                               NOW)
    done = pytest_run("-m", "emergency", "--collect-only", "-q", "--detected-at",
                      (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat())
    assert done.returncode == 4 and "is in the future" in done.stdout + done.stderr, done.stdout + done.stderr


@pytest.mark.parametrize("policy", ["missing.yaml", "/dev/null"], ids=["missing", "not-a-policy"])
def test_an_unusable_review_policy_is_refused_before_anything_changes(live: LiveLike, policy: str) -> None:
    """A mistyped --review-policy is found before the first change (it used to be found after the DB key was
    rotated): the guard refuses the confirmed run, naming the file, and .env is untouched."""
    before = live.env_file.read_bytes()
    done = rotation_emergency(*live.options("--confirm-live", *CHANGE, "--compromised", "smtp", *STAKEHOLDERS,
                                            f"--review-policy={policy}"))
    out = done.stdout + done.stderr
    assert done.returncode == 4, out[-3000:]
    assert "LIVE RUN REFUSED; nothing was changed" in out and "--review-policy: " in out, out[-3000:]
    assert Path(policy).name in out.split("LIVE RUN REFUSED", 1)[1]
    live.unchanged(before)


def test_self_approval_is_refused_before_anything_changes(live: LiveLike) -> None:
    """The approver is the operator (the configuration's [duties] does not allow it: rotation/core/duties.py): the
    confirmed emergency is refused at start-up and nothing changes."""
    before = live.env_file.read_bytes()
    done = rotation_emergency(*live.options("--confirm-live", "--change-id", "CHG-4711", "--approver", "ops",
                                            "--operator", "ops", "--compromised", "smtp", *STAKEHOLDERS,
                                            f"--review-policy={POLICY}"))
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert "the approver (ops) is the operator (ops)" in out, out[-3000:]
    live.unchanged(before)


def test_a_database_that_does_not_answer_ends_the_emergency_before_it_starts_in_one_line(live: LiveLike,
                                                                                         tmp_path: Path) -> None:
    """A wrong port in --dsn: every scenario fails at its first step with the database's one message (libpq's words
    and the fix, no traceback through the library), the incident is said NOT STARTED with nothing changed, and the
    command to run once it is fixed is the operator's own."""
    closed = make_conninfo(live.dsn, port=str(free_port()))
    key = tmp_path / "signing-key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True, capture_output=True)
    before = live.env_file.read_bytes()
    done = rotation_emergency(*dataclasses.replace(live, dsn=closed).options(
        "--confirm-live", *CHANGE, "--operator=ops", "--compromised=smtp", *STAKEHOLDERS, f"--review-policy={POLICY}",
        "--incident-start=2026-11-25T06:00:00+00:00", f"--signing-key={key}", f"--reports-dir={tmp_path / 'reports'}",
        "--allow-staging-endpoints"))
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    folder = newest_run_folder(tmp_path / "reports")
    assert folder is not None
    steps = step_results(folder)
    failed = [s for s in steps if s.status == "failed"]
    scenarios = {s.scenario for s in steps}
    assert len(scenarios) == 4 and {s.scenario for s in failed} == scenarios and len(failed) == 4, steps
    assert all(str(s.error).startswith("DatabaseUnreachable: the database does not answer (connection failed:")
               and "check --dsn" in str(s.error) for s in failed), failed
    failures = out.split("= FAILURES =", 1)[1].split("= next step =", 1)[0]
    assert "rotation/" not in failures and "_pytest/" not in failures, failures[:3000]
    last = done.stdout.rstrip().splitlines()[-1]  # printed last (stderr may carry pytest's warnings)
    assert last.startswith("incident CHG-4711 NOT STARTED: nothing was changed") and \
        "Next: fix the cause above, then run the same command again: rotation emergency " in last, last
    live.unchanged(before)


def test_an_operator_running_pytest_gets_the_same_line_naming_their_pytest_command(live: LiveLike,
                                                                                   tmp_path: Path) -> None:
    """The runbook's operator may run `pytest -m emergency --target live ...` itself: the one line names that pytest
    command (its DSN password masked), in the output and the evidence."""
    password = "pw-" + secrets.token_hex(8)
    closed = make_conninfo(live.dsn, port=str(free_port()), password=password)
    key = tmp_path / "signing-key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True, capture_output=True)
    done = pytest_run(*dataclasses.replace(live, dsn=closed).args(
        "--confirm-live", *CHANGE, "--operator=ops", "--compromised=smtp", *STAKEHOLDERS, f"--review-policy={POLICY}",
        "--incident-start=2026-11-25T06:00:00+00:00", f"--signing-key={key}", f"--reports-dir={tmp_path / 'reports'}",
        "--allow-staging-endpoints", "-m", "emergency"))
    out = done.stdout + done.stderr
    assert done.returncode == 1 and password not in out, out[-3000:]
    said = [line for line in done.stdout.splitlines() if line.startswith("incident CHG-4711 NOT STARTED")]
    assert len(said) == 1 and "run the same command again: pytest --target live '--dsn=" in said[0], said
    assert "password=***" in said[0] and "-m emergency" in said[0], said
    folder = newest_run_folder(tmp_path / "reports")
    assert folder is not None
    recorded = [e["value"] for e in read_evidence(folder) if e.get("name") == "printed at the end: next step"]
    assert recorded == [[said[0]]], recorded
