"""The operator's `rotation provider rotate <provider>` runs the credential's feature, live, against the stand-ins
(--allow-staging-endpoints): a signed run folder whose evidence lists the steps of the feature's scheduled scenario in
order, read from the feature file itself; and a kill -9 after any step, followed by the same command, finishes the
rotation (the old credential rejected, the new one in .env and working, one rotation log row)."""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from gherkin.parser import Parser

from rotation.core import app_control, state
from rotation.core.database import connect
from rotation.core.keys import generate_key
from rotation.core.secret import Secret
from staging.app import loaded_fingerprints
from staging.graph_standin import UNDELIVERABLE
from tests.harness import PROJECT, SuiteRun, read_evidence
from tests.providers.conftest import ProviderWorld, credential_of, leaked

FEATURES = {"twilio": "twilio_auth_token.feature", "whatsapp": "whatsapp_access_token.feature",
            "smtp": "smtp_password.feature"}


def scheduled_steps(provider: str) -> list[str]:
    """Background and @scheduled scenario steps of the provider's feature, as `Keyword text`."""
    path = PROJECT / "rotation_suite" / "features" / "rotation" / FEATURES[provider]
    feature = Parser().parse(path.read_text())["feature"]
    children = [next(iter(c.values())) for c in feature["children"]]
    background = [c for c in children if "tags" not in c]
    [scheduled] = [c for c in children if "@scheduled" in [t["name"] for t in c.get("tags", [])]]
    return [f"{s['keyword'].strip()} {s['text']}" for c in [*background, scheduled] for s in c["steps"]]


def rotation_ids(run: SuiteRun) -> set[str]:
    assert run.run_folder is not None, run.output[-3000:]
    return {str(e["value"]["rotation"]) for e in read_evidence(run.run_folder)
            if e["type"] == "evidence" and isinstance(e.get("value"), dict) and e["value"].get("rotation")}


def log_rows(pw: ProviderWorld, provider: str) -> int:
    with connect(pw.deployment.dsn) as conn:
        row = conn.execute("SELECT count(*) FROM security_credential_rotations WHERE credential_type = %s",
                           (credential_of(provider).type,)).fetchone()
    return int(row[0]) if row else 0


def assert_rotated(pw: ProviderWorld, provider: str, old: Secret, rows: int) -> None:
    """.env holds a new credential the provider accepts and the app uses; the old one is refused; the rotation is
    finished in the state and logged once per rotation."""
    rotation = pw.rotation(provider)
    new = pw.in_env(provider)
    assert new != old, f"{rotation.credential.env} in .env is still the old credential"
    recorded = state.load(pw.env_file, rotation.credential.type)
    assert recorded is not None and recorded.step == "finish", recorded
    assert recorded.current_fp == new.fingerprint, recorded
    assert not state.pending_path(pw.env_file, rotation.credential.type).exists()
    health = app_control.wait_for_health(pw.deployment.app.health_url, timeout_s=10)
    assert health.healthy, health.body
    assert loaded_fingerprints(pw.deployment.app.health_url)[rotation.credential.env] == new.fingerprint
    assert rotation.provider.check(new).accepted
    assert not rotation.provider.check(old).accepted, "the old credential is still accepted"
    assert log_rows(pw, provider) == rows


def test_rotate_twilio_leaves_a_signed_run_folder_listing_the_feature_steps(provider_world: ProviderWorld) -> None:
    old = provider_world.in_env("twilio")
    run = provider_world.cli("rotate", "twilio")
    assert run.returncode == 0, run.output[-4000:]
    assert [s.step for s in run.steps()] == scheduled_steps("twilio")
    assert {s.status for s in run.steps()} == {"passed"}
    assert len(rotation_ids(run)) == 1
    signer = json.loads((run.run_folder / "manifest.json").read_text())["public_key_fingerprint"]
    verified = subprocess.run([sys.executable, "-m", "rotation", "verify-evidence", str(run.run_folder),
                               "--fingerprint", signer], cwd=PROJECT, capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert old.reveal() not in run.output
    assert_rotated(provider_world, "twilio", old, rows=1)


def kill_then_rerun(pw: ProviderWorld, provider: str, step: str, rows: int) -> int:
    """Kill `rotation provider rotate` right after `step`, run the same command again, check the rotation finished.
    Returns how many rotations of this credential the log now holds."""
    old = pw.in_env(provider)
    killed = pw.cli("rotate", provider, kill_after=step)
    assert killed.returncode == -signal.SIGKILL, f"{step}: {killed.output[-3000:]}"
    assert app_control.health(pw.deployment.app.health_url).healthy, f"the app broke at the kill after {step!r}"
    recorded = state.load(pw.env_file, credential_of(provider).type)
    in_progress = recorded is not None and recorded.in_progress
    finished = recorded is not None and recorded.step == "finish" and recorded.previous_fp == old.fingerprint
    rows += 1 if finished else 0  # killed after the rotation was logged: the rerun is a rotation of its own
    before_rerun = pw.in_env(provider) if finished else old
    rerun = pw.cli("rotate", provider)
    assert rerun.returncode == 0, f"{step}: {rerun.output[-4000:]}"
    resumed = recorded.rotation_id if recorded is not None and in_progress else None
    assert resumed is None or rotation_ids(rerun) == {resumed}, (
        f"{step}: the rerun did not finish rotation {resumed}: its evidence names {rotation_ids(rerun)}")
    assert_rotated(pw, provider, before_rerun, rows + 1)
    for output in (killed.output, rerun.output):
        assert old.reveal() not in output and pw.in_env(provider).reveal() not in output, f"{step}: a credential leaked"
    return rows + 1


def acting_steps(provider: str) -> list[str]:
    """The Given and When steps of the scheduled scenario (an `And` takes the keyword before it): the steps that act.
    The Then steps only read (tests/providers/test_procedure.py::test_the_checks_only_read), so a kill after one
    leaves exactly what a kill after the acting step before it leaves."""
    acting, keyword = [], ""
    for step in scheduled_steps(provider):
        word, text = step.split(" ", 1)
        keyword = keyword if word in ("And", "But") else word
        acting += [text] if keyword in ("Given", "When") else []
    return acting


@pytest.mark.parametrize("provider", ["twilio"])
def test_killed_after_each_step_the_same_command_finishes_the_rotation(provider_world: ProviderWorld,
                                                                       provider: str) -> None:
    """The command is killed right after the first acting step of the scheduled scenario; run again, it is killed
    right after the second; and so on. Each run takes up the state the kill before it left and gets past every step
    up to its own kill (a failing step would end it with an exit code, not the kill); every kill leaves the app
    healthy and one rotation in progress; the last run finishes that rotation."""
    steps = acting_steps(provider)
    assert len(steps) >= 9 and steps[0].startswith("the application is running"), steps
    old, in_progress = provider_world.in_env(provider), set()
    for n, step in enumerate(steps):
        killed = provider_world.cli("rotate", provider, kill_after=step)
        assert killed.returncode == -signal.SIGKILL, (
            f"killed after {steps[n - 1] if n else 'nothing'!r}, the same command did not get past {step!r}: "
            f"{killed.output[-3000:]}")
        assert app_control.health(provider_world.deployment.app.health_url).healthy, f"the app broke at {step!r}"
        assert old.reveal() not in killed.output, f"{step}: a credential leaked"
        recorded = state.load(provider_world.env_file, credential_of(provider).type)
        in_progress |= {recorded.rotation_id} if recorded is not None and recorded.in_progress else set()
    assert len(in_progress) == 1, f"the kills were taken up as more than one rotation: {in_progress}"
    recorded = state.load(provider_world.env_file, credential_of(provider).type)
    finished = recorded is not None and recorded.step == "finish"  # killed right after the log: that one is done
    before_final = provider_world.in_env(provider) if finished else old
    final = provider_world.cli("rotate", provider)
    assert final.returncode == 0, final.output[-4000:]
    assert finished or rotation_ids(final) == in_progress, (rotation_ids(final), in_progress)
    assert_rotated(provider_world, provider, before_final, 2 if finished else 1)
    assert before_final.reveal() not in final.output and provider_world.in_env(provider).reveal() not in final.output


def test_whatsapp_killed_after_issuing_and_after_revoking_the_same_command_finishes(
        provider_world: ProviderWorld) -> None:
    """The two moves at Meta: a kill right after each leaves a state the same command finishes."""
    steps = scheduled_steps("whatsapp")
    moves = [s.split(" ", 1)[1] for s in steps if s.startswith("When a new") or s.startswith("When the old")]
    assert len(moves) == 2, steps
    rows = 0
    for step in moves:
        rows = kill_then_rerun(provider_world, "whatsapp", step, rows)


def test_smtp_rotated_live_with_the_operators_password_finishes_once_the_old_one_is_revoked(
        provider_world: ProviderWorld) -> None:
    """SMTP has no rotation API: live, the operator creates the new password at the provider and hands it over in
    $SMTP_NEW_PASSWORD, and revokes the old one there. Until the old one is revoked the rotation stops at the step
    that has it revoked (no terminal here: it asks the relay up to --revoke-wait), with the app already on the new
    password; the same command then finishes."""
    old, new = provider_world.in_env("smtp"), Secret(generate_key().reveal())
    provider_world.standins.smtp.add_password(new)  # created at the provider by the operator
    handed_over = {"SMTP_NEW_PASSWORD": new.reveal()}
    first = provider_world.cli("rotate", "smtp", "--revoke-wait=1", environ=handed_over)
    assert first.returncode == 1, first.output[-3000:]
    failed = first.failed_step()
    assert failed.text.startswith("the old SMTP password is revoked at the email provider"), failed.step
    assert "not revoked: still accepted" in (failed.error or "")
    assert provider_world.in_env("smtp") == new and app_control.health(provider_world.deployment.app.health_url).healthy
    provider_world.standins.smtp.remove_password(old)  # the operator revokes the old password at the provider
    second = provider_world.cli("rotate", "smtp", environ=handed_over)
    assert second.returncode == 0, second.output[-3000:]
    assert rotation_ids(first) == rotation_ids(second) and len(rotation_ids(second)) == 1
    assert_rotated(provider_world, "smtp", old, rows=1)
    assert not leaked(first.output + second.output, old, new)


RESTARTED_BY_THE_RERUN = "application started: an earlier run had stopped it"


def once(armed: Path, then: str, command: str) -> str:
    """`command`, wrapped so that the first time it runs (while `armed` exists) `then` happens as well."""
    script = f"{command} || exit $?; if [ -e {armed} ]; then rm {armed}; {then}; fi"
    return f"sh -c {shlex.quote(script)}"


def killed_start(armed: Path, command: str) -> str:
    """`command`, SIGKILLed before it starts anything the first time it runs."""
    script = f"if [ -e {armed} ]; then rm {armed}; kill -9 $$; fi; exec {command}"
    return f"sh -c {shlex.quote(script)}"


@pytest.mark.parametrize("provider", ["smtp", "twilio"])
@pytest.mark.parametrize("crash", ["tool killed after the stop", "start command killed"])
def test_a_crash_during_the_restart_leaves_the_stop_record_and_the_rerun_starts_the_app_saying_so(
        provider_world: ProviderWorld, tmp_path: Path, provider: str, crash: str) -> None:
    """The app's restart is its stop then its start. A kill -9 of the operator's command right after the stop (the
    stop command's wrapper kills its parent, the command), or of the start command, leaves the app stopped and the
    record naming the run that stopped it; the same command again starts the app, says which run had stopped it (in
    its output and its evidence) and finishes the rotation. Before: the rerun waited a minute for the app and failed
    `application is not healthy: HTTP None`."""
    pw, armed = provider_world, tmp_path / "armed"
    armed.touch()
    app = pw.deployment.app
    wrapped = ({"app_stop": once(armed, "kill -9 $PPID", app.stop)} if crash == "tool killed after the stop" else
               {"app_start": killed_start(armed, app.start)})
    old, new = pw.in_env(provider), Secret(generate_key().reveal())
    handed_over = {"SMTP_NEW_PASSWORD": new.reveal()} if provider == "smtp" else {}
    if provider == "smtp":
        pw.standins.smtp.add_password(new)  # created at the provider by the operator

    first = pw.cli("rotate", provider, environ=handed_over, **wrapped)
    assert not armed.exists(), first.output[-3000:]
    if crash == "tool killed after the stop":
        assert first.returncode == -signal.SIGKILL, first.output[-3000:]
    else:
        assert first.returncode == 1, first.output[-3000:]
        failed = first.failed_step()
        assert failed.text == "the application is reloaded" and "exited -9" in (failed.error or ""), failed
    assert not app_control.wait_for_health(app.health_url, healthy=False, timeout_s=10).healthy
    stopped = app_control.stopped_by(pw.env_file)
    assert stopped is not None and stopped.credential == credential_of(provider).type, stopped
    assert pw.in_env(provider) != old  # .env was updated before the restart: the app must start on the new one
    recorded = state.load(pw.env_file, credential_of(provider).type)
    assert recorded is not None and recorded.in_progress, recorded
    if provider == "smtp":
        pw.standins.smtp.remove_password(old)  # meanwhile the operator revoked the old password at the provider

    again = pw.cli("rotate", provider, environ=handed_over, **wrapped)
    assert again.returncode == 0, again.output[-4000:]
    said = f"the app was stopped by run {stopped.run} "
    assert said in again.output and "did not start it again: starting it" in again.output, again.output[-3000:]
    assert again.run_folder is not None
    started = [e["value"] for e in read_evidence(again.run_folder)
               if e["type"] == "evidence" and e["name"] == RESTARTED_BY_THE_RERUN]
    assert len(started) == 1 and f"run {stopped.run} " in str(started[0]["stopped by"]), started
    assert rotation_ids(again) == {recorded.rotation_id}
    assert app_control.stopped_by(pw.env_file) is None
    assert_rotated(pw, provider, old, rows=1)
    assert not leaked(first.output + again.output, old, new, pw.in_env(provider))


def test_the_command_refuses_what_is_not_a_provider_credential(capsys: pytest.CaptureFixture[str]) -> None:
    from rotation.cli import main

    assert main(["provider", "rotate", "db_encryption_key", "--dry-run"]) == 2
    assert "rotation db-key rotate" in capsys.readouterr().out
    assert main(["provider", "rotate", "fax", "--dry-run"]) == 2
    assert "unknown credential 'fax'" in capsys.readouterr().out


PROMOTE_STEP = "the new Twilio auth token is promoted to primary"


def test_a_lost_promote_answer_is_reconciled_on_twilios_404_then_a_kill_and_the_rerun_finish(
        provider_world: ProviderWorld) -> None:
    """Twilio carries out the promotion but its answer never arrives (past the live 10 s client timeout): the retry
    gets 404/20404 (nothing left to promote), the new token works and the old one is refused, so the step passes.
    The command is then killed right after that step, and the same command finishes the rotation."""
    twilio, old = provider_world.standins.twilio, provider_world.in_env("twilio")
    twilio.faults.lose_answer_next(1, 11.0, match="/AuthTokens/Promote")
    killed = provider_world.cli("rotate", "twilio", kill_after=PROMOTE_STEP)
    assert killed.returncode == -signal.SIGKILL, killed.output[-3000:]
    promotes = [status for method, path, status in twilio.requests if path == "/v1/AuthTokens/Promote"]
    assert promotes == [200, 404], twilio.requests
    rerun = provider_world.cli("rotate", "twilio")
    assert rerun.returncode == 0, rerun.output[-3000:]
    retired = [e["value"] for e in read_evidence(rerun.run_folder) if e.get("name") == "old Twilio auth token retired"]
    assert retired and str(retired[0]["revocation"]).startswith(
        "revoked by someone before this run (an earlier run or the operator); refused at "), retired
    assert_rotated(provider_world, "twilio", old, rows=1)


def test_a_secondary_someone_else_left_is_refused_and_replace_secondary_discards_it(
        provider_world: ProviderWorld) -> None:
    twilio, old = provider_world.standins.twilio, provider_world.in_env("twilio")
    theirs = twilio.plant_secondary(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    before = provider_world.env_file.read_bytes()
    refused = provider_world.cli("rotate", "twilio")
    failed = refused.failed_step()
    assert failed.text == "a new Twilio auth token is created as the secondary auth token", failed.step
    assert "already exists; this rotation did not create it" in (failed.error or "")
    assert "--replace-secondary" in (failed.error or "") and not leaked(refused.output, theirs)
    assert twilio.secondary == theirs and provider_world.env_file.read_bytes() == before  # nothing changed
    assert state.load(provider_world.env_file, credential_of("twilio").type) is None
    replaced = provider_world.cli("rotate", "twilio", "--replace-secondary")
    assert replaced.returncode == 0, replaced.output[-3000:]
    assert replaced.run_folder is not None
    [discarded] = [e["value"] for e in read_evidence(replaced.run_folder)
                   if e.get("name") == "existing pending Twilio auth token discarded at the provider"]
    assert discarded["credential"] == Secret(theirs).fingerprint and "--replace-secondary" in discarded[
        "discarded because"]
    assert not provider_world.provider("twilio").check(Secret(theirs)).accepted
    assert_rotated(provider_world, "twilio", old, rows=1)


def verdicts(run: SuiteRun) -> list[str]:
    assert run.run_folder is not None, run.output[-3000:]
    return [str(e["value"]["verdict"]) for e in read_evidence(run.run_folder) if e.get("name") == "test message"]


def test_live_whatsapp_and_smtp_checks_read_accepted_and_the_apps_failed_record_fails_the_step(
        provider_world: ProviderWorld) -> None:
    """Live, nothing proves a WhatsApp or SMTP delivery unless the operator asks for the app's records: the check
    reads "accepted by Meta" / "accepted by the relay (250)", never "delivered". With the app's records asked for,
    the record saying failed fails the step."""
    whatsapp = provider_world.cli("rotate", "whatsapp")
    assert whatsapp.returncode == 0, whatsapp.output[-3000:]
    new_password = {"SMTP_NEW_PASSWORD": generate_key().reveal()}
    provider_world.standins.smtp.add_password(new_password["SMTP_NEW_PASSWORD"])  # the operator's, at the provider
    smtp = provider_world.cli("rotate", "smtp", "--revoke-wait=1", environ=new_password)  # stops: nobody revokes
    assert smtp.failed_step().text.startswith("the old SMTP password is revoked"), smtp.output[-3000:]
    assert verdicts(whatsapp) == ["accepted by Meta; delivery not proven"]
    assert verdicts(smtp) == ["accepted by the relay (250); delivery not proven"]
    provider_world.standins.graph.outcome = UNDELIVERABLE
    proven = provider_world.cli("rotate", "whatsapp", "--prove-delivery-from-app", "--delivery-wait=10")
    failed = proven.failed_step()
    assert failed.text.startswith("the test WhatsApp message is accepted by Meta"), failed.step
    assert "was not delivered: the app recorded message wamid." in (failed.error or "")
    assert "failed: 131026 Message undeliverable" in (failed.error or "")


STANDS = re.compile(r"^(DONE|IN PROGRESS|SAFE|NOT SAFE YET|UNKNOWN)\b")


def named_command(output: str) -> tuple[str, list[str]]:
    """The run's one line (printed last on stdout; stderr, joined after it, may carry pytest's warnings) and the
    command it names."""
    last = [line for line in output.splitlines() if STANDS.match(line)][-1]
    words = shlex.split(last.split("`")[1]) if last.count("`") >= 2 else []
    return last, words


def test_the_command_ends_with_one_line_where_the_rotation_stands_and_the_command_to_run_next(
        provider_world: ProviderWorld, tmp_path: Path) -> None:
    """Each way a provider rotation ends says where it stands in one line, last, with the command to run next, and
    records it in the signed evidence: nothing changed (the app down at the start), in progress (the start command
    killed after .env changed), finished (the command it named, run as it is)."""
    pw, armed = provider_world, tmp_path / "armed"
    app, twilio = pw.deployment.app, credential_of("twilio")
    old = pw.in_env("twilio")

    app_control.run(app.stop)
    down = pw.cli("rotate", "twilio", "--health-timeout=2")
    line, named = named_command(down.output)
    assert down.returncode == 1 and line.startswith("NOT SAFE YET (nothing changed, but the app is not healthy at "
                                                    f"{app.health_url} (HTTP no answer)): .env holds "
                                                    f"{old.fingerprint}. Next: fix the cause above"), line
    assert named[:4] == ["rotation", "provider", "rotate", "twilio"], named
    assert down.failed_step().text == f"the application is running with the current {twilio.label}"
    app_control.start_app(app, pw.env_file)

    armed.touch()
    stopped = pw.cli("rotate", "twilio", app_start=killed_start(armed, app.start))
    line, named = named_command(stopped.output)
    progress = state.load(pw.env_file, twilio.type)
    assert stopped.returncode == 1 and progress is not None and progress.step == "set", stopped.output[-3000:]
    new = pw.in_env("twilio")
    assert line.startswith(f"IN PROGRESS: rotation {progress.rotation_id} of the {twilio.label} stopped after step "
                           f"'set'; .env holds the new {twilio.label} {new.fingerprint}; the app is not healthy"), line
    assert named[:4] == ["rotation", "provider", "resume", "twilio"] and "--confirm-live" in named, named
    assert stopped.run_folder is not None
    stands = [e["value"] for e in read_evidence(stopped.run_folder) if e.get("name") == "where the rotation stands"]
    assert [(s["safe state"], s["next step"]) for s in stands] == [("in progress", line)], stands

    done = subprocess.run([sys.executable, "-m", *named], cwd=PROJECT, env=pw.command_env(), capture_output=True,
                          text=True, timeout=180, check=False, start_new_session=True)
    line, named = named_command(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert line == (f"DONE: rotation {progress.rotation_id} of the {twilio.label} is finished: .env holds "
                    f"{new.fingerprint}; the app is healthy at {app.health_url}. Nothing to do."), line
    assert_rotated(pw, "twilio", old, rows=1)
