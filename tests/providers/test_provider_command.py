"""The operator's `rotation provider rotate <provider>` runs the credential's feature, live, against the stand-ins
(--allow-staging-endpoints): a signed run folder whose evidence lists the steps of the feature's scheduled scenario in
order, read from the feature file itself; and a kill -9 after any step, followed by the same command, finishes the
rotation (the old credential rejected, the new one in .env and working, one rotation log row)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from gherkin.parser import Parser

from rotation.core import app_control, state
from rotation.core.database import connect
from rotation.core.secret import Secret
from rotation.providers.procedure import app_credential
from tests.harness import PROJECT, SuiteRun, read_evidence
from tests.providers.conftest import ProviderWorld, credential_of

FEATURES = {"twilio": "twilio_auth_token.feature", "whatsapp": "whatsapp_access_token.feature",
            "smtp": "smtp_password.feature"}


def scheduled_steps(provider: str) -> list[str]:
    """Background and @scheduled scenario steps of the provider's feature, as `Keyword text`."""
    feature = Parser().parse((PROJECT / "features" / "rotation" / FEATURES[provider]).read_text())["feature"]
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
    assert health.healthy and app_credential(health, provider) == new.fingerprint, health.body
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
    verified = subprocess.run([sys.executable, "-m", "rotation", "verify-evidence", str(run.run_folder)],
                              cwd=PROJECT, capture_output=True, text=True, check=False)
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


@pytest.mark.parametrize("provider", ["twilio"])
def test_killed_after_each_step_the_same_command_finishes_the_rotation(provider_world: ProviderWorld,
                                                                       provider: str) -> None:
    """One rotation per step of the scheduled scenario, one after the other in the same world."""
    rows = 0
    for step in scheduled_steps(provider):
        rows = kill_then_rerun(provider_world, provider, step.split(" ", 1)[1], rows)


@pytest.mark.parametrize("provider", ["whatsapp", "smtp"])
def test_killed_after_each_state_change_the_same_command_finishes_the_rotation(provider_world: ProviderWorld,
                                                                               provider: str) -> None:
    """The steps after which the four-step state changes (create, set, test, finish), and the provider's retirement."""
    changes = [s.split(" ", 1)[1] for s in scheduled_steps(provider)
               if s.split(" ", 1)[0] == "When" and "reloaded" not in s] + [
        s.split(" ", 1)[1] for s in scheduled_steps(provider) if "no delivery failure" in s]
    rows = 0
    for step in changes:
        rows = kill_then_rerun(provider_world, provider, step, rows)
