"""Crash safety of the provider rotations: the real `rotation provider rotate` process SIGKILLs itself right after
each of the four steps is recorded; `rotation provider resume` then finishes with the app healthy on the new
credential, the old one rejected at the provider and the rotation logged once."""

from __future__ import annotations

import signal

import pytest

from rotation.core import app_control, envfile, state
from rotation.core.database import connect
from rotation.core.secret import fingerprint
from rotation.providers import procedure as rotation
from rotation.providers.factory import CREDENTIAL_TYPES
from tests.providers.conftest import ProviderWorld


def assert_finished(pw: ProviderWorld, name: str, old: str, rotations: int) -> None:
    provider = pw.provider(name)
    new = envfile.get_value(pw.world.env_file, provider.env_name)
    assert new != old, f"{provider.env_name} in .env is still the old credential"
    recorded = state.load(pw.world.env_file, provider.credential_type)
    assert recorded is not None and recorded.step == "finish", recorded
    assert (recorded.current_fp, recorded.previous_fp) == (fingerprint(new), fingerprint(old)), recorded
    assert not rotation.pending_path(pw.world.env_file, provider.credential_type).exists()
    health = app_control.wait_for_health(pw.world.app.health_url, timeout_s=10)
    assert health.healthy, health.body
    assert rotation.app_credential(health, provider) == fingerprint(new), "the app does not run on the new credential"
    assert provider.check(new).accepted
    assert not provider.check(old).accepted, "the old credential is still accepted"
    with connect(pw.world.dsn) as conn:
        rows = conn.execute("SELECT count(*) FROM security_credential_rotations WHERE credential_type = %s",
                            (provider.credential_type,)).fetchone()[0]
    assert rows == rotations, f"{rows} rotation log rows for {provider.credential_type} after {rotations} rotations"


@pytest.mark.parametrize("name", ["twilio", "whatsapp", "smtp"])
def test_killed_after_each_step_the_rerun_finishes(provider_world: ProviderWorld, name: str) -> None:
    """One rotation per step, one after the other in the same world: kill after the step, resume, check the end."""
    env_file, env_name = provider_world.world.env_file, provider_world.provider(name).env_name
    for rotations, step in enumerate(state.STEPS, start=1):
        old = envfile.get_value(env_file, env_name)
        killed = provider_world.cli("rotate", name, kill_after=step)
        assert killed.returncode == -signal.SIGKILL, f"{step}: {killed.stderr}"
        recorded = state.load(env_file, CREDENTIAL_TYPES[name])
        assert recorded is not None and recorded.step == step, f"state after the kill after {step}: {recorded}"
        assert app_control.health(provider_world.world.app.health_url).healthy, f"the app broke at the kill ({step})"

        resumed = provider_world.cli("resume", name)
        assert resumed.returncode == 0, f"{step}: {resumed.stderr}"
        assert_finished(provider_world, name, old, rotations)
        secrets = [old, envfile.get_value(env_file, env_name)]
        for output in (killed.stderr + killed.stdout, resumed.stderr + resumed.stdout):
            assert not [s for s in secrets if s in output], f"{step}: a credential appears in the command's output"


@pytest.mark.parametrize("name", ["twilio", "whatsapp", "smtp"])
def test_abandoning_a_pending_credential_that_never_reached_env(provider_world: ProviderWorld, name: str) -> None:
    env_file = provider_world.world.env_file
    credential_type = CREDENTIAL_TYPES[name]
    assert provider_world.cli("rotate", name, kill_after="create").returncode == -signal.SIGKILL
    orphan = rotation.pending_path(env_file, credential_type).read_text()
    refused = provider_world.cli("rotate", name)  # a new rotation refuses to start over the stale PENDING
    assert refused.returncode == 1 and "still PENDING" in refused.stderr, refused.stderr
    abandoned = provider_world.cli("rotate", name, "--abandon-pending")
    assert abandoned.returncode == 0, abandoned.stderr
    assert_finished(provider_world, name, provider_world.originals[name], 1)
    if name == "twilio":  # Twilio keeps one secondary token: the orphan was deleted before a new one was made
        assert not provider_world.provider(name).check(orphan).accepted


@pytest.mark.parametrize("name", ["whatsapp"])  # the refusal is provider-independent code
def test_abandoning_is_refused_once_the_new_credential_is_in_env(provider_world: ProviderWorld, name: str) -> None:
    assert provider_world.cli("rotate", name, kill_after="set").returncode == -signal.SIGKILL
    refused = provider_world.cli("rotate", name, "--abandon-pending")
    assert refused.returncode == 1 and "resume the rotation instead" in refused.stderr, refused.stderr
    assert provider_world.cli("resume", name).returncode == 0
    assert_finished(provider_world, name, provider_world.originals[name], 1)
