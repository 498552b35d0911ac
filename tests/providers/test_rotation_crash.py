"""Crash safety of the provider rotations: the real `rotation provider rotate` process SIGKILLs itself right after
each of the four steps is recorded; `rotation provider resume` then finishes with the app healthy on the new
credential, the old one rejected at the provider and the rotation logged once."""

from __future__ import annotations

import signal

import pytest

from rotation import app_control, envfile, state
from rotation import provider_rotation as rotation
from rotation.db.connect import connect
from rotation.keys import fingerprint
from rotation.providers.factory import CREDENTIAL_TYPES
from tests.providers.conftest import ProviderWorld


def assert_finished(pw: ProviderWorld, name: str) -> None:
    provider = pw.provider(name)
    old = pw.originals[name]
    new = envfile.get_value(pw.world.env_file, provider.env_name)
    assert new != old, f"{provider.env_name} in .env is still the original credential"
    recorded = state.load(pw.world.env_file, provider.credential_type)
    assert recorded is not None and recorded.step == "finish" and recorded.current_fp == fingerprint(new)
    assert recorded.previous_fp == fingerprint(old) or recorded.pending_fp is None
    assert not rotation.pending_path(pw.world.env_file, provider.credential_type).exists()
    health = app_control.wait_for_health(pw.world.app.health_url, timeout_s=10)
    assert health.healthy, health.body
    assert rotation.app_credential(health, provider) == fingerprint(new), "the app does not run on the new credential"
    assert provider.check(new).accepted
    assert not provider.check(old).accepted, "the old credential is still accepted"
    with connect(pw.world.dsn) as conn:
        rows = conn.execute("SELECT count(*) FROM security_credential_rotations WHERE credential_type = %s",
                            (provider.credential_type,)).fetchone()[0]
    assert rows == 1, f"{rows} rotation log rows for {provider.credential_type}"


@pytest.mark.parametrize("step", state.STEPS)
@pytest.mark.parametrize("name", ["twilio", "whatsapp", "smtp"])
def test_killed_after_each_step_the_rerun_finishes(provider_world: ProviderWorld, name: str, step: str) -> None:
    killed = provider_world.cli("rotate", name, kill_after=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    recorded = state.load(provider_world.world.env_file, CREDENTIAL_TYPES[name])
    assert recorded is not None and recorded.step == step, f"state after the kill: {recorded}"
    assert app_control.health(provider_world.world.app.health_url).healthy, "the app broke at the kill"

    resumed = provider_world.cli("resume", name)
    assert resumed.returncode == 0, resumed.stderr
    assert_finished(provider_world, name)
    secrets = [provider_world.originals[name], envfile.get_value(provider_world.world.env_file,
                                                                  provider_world.provider(name).env_name)]
    for output in (killed.stderr + killed.stdout, resumed.stderr + resumed.stdout):
        assert not [s for s in secrets if s in output], "a credential appears in the command's output"


@pytest.mark.parametrize("name", ["twilio", "whatsapp", "smtp"])
def test_a_new_rotation_refuses_to_start_over_a_stale_pending(provider_world: ProviderWorld, name: str) -> None:
    killed = provider_world.cli("rotate", name, kill_after="create")
    assert killed.returncode == -signal.SIGKILL
    refused = provider_world.cli("rotate", name)
    assert refused.returncode == 1 and "still PENDING" in refused.stderr, refused.stderr
    assert provider_world.cli("resume", name).returncode == 0
    assert_finished(provider_world, name)
