"""The provider rotation's safeguards, step by step in-process against the stand-ins: a rotation in progress is
finished, not restarted; abandoning is possible only while the new credential has not reached .env; a lost pending
credential, a missing backup, a weak or reused new credential or an untested new credential stop the rotation
before anything is lost, with a message that names what is wrong and no credential."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from rotation.core import app_control, envfile, state
from rotation.core.database import connect
from rotation.core.proof import CheckFailed, Evidence, NoEvidence
from rotation.core.secret import Secret
from rotation.providers.base import ProviderError
from rotation.providers.factory import ProviderOptions, rotation_for
from rotation.providers.procedure import ProviderRotation, reload_application
from staging.provider_standins import STAGING_POLICY
from tests.providers.conftest import ProviderWorld, credential_of, leaked, run_all_steps

NOTHING = NoEvidence()


def started(pw: ProviderWorld, name: str, **options: object) -> ProviderRotation:
    rotation = pw.rotation(name, STAGING_POLICY, **options)
    envfile.backup(pw.env_file)
    rotation.running_with_current(rotation.label, NOTHING)
    return rotation


def until_set(rotation: ProviderRotation) -> None:
    rotation.create(NOTHING)
    rotation.test_before_deployment(NOTHING)
    rotation.update_configuration(NOTHING)


def test_a_rerun_finishes_the_rotation_in_progress_instead_of_starting_another(provider_world: ProviderWorld) -> None:
    first = started(provider_world, "twilio")
    until_set(first)
    rerun = started(provider_world, "twilio")
    rerun.create(NOTHING)
    assert (rerun.rotation_id, rerun.new, rerun.old) == (first.rotation_id, first.new, first.old)
    run_all_steps(rerun)
    assert provider_world.in_env("twilio") == first.new and not rerun.provider.check(first.old).accepted


def test_abandoning_discards_the_pending_credential_at_the_provider(provider_world: ProviderWorld) -> None:
    orphaned = started(provider_world, "twilio")
    orphaned.create(NOTHING)
    fresh = started(provider_world, "twilio", abandon_pending=True)
    fresh.create(NOTHING)
    assert fresh.rotation_id != orphaned.rotation_id and fresh.new != orphaned.new
    assert not fresh.provider.check(orphaned.new).accepted  # Twilio's secondary was deleted before the new one
    run_all_steps(started(provider_world, "twilio"))
    assert provider_world.in_env("twilio") == fresh.new


def test_abandoning_is_refused_once_env_holds_the_new_credential(provider_world: ProviderWorld) -> None:
    first = started(provider_world, "whatsapp")
    until_set(first)
    with pytest.raises(CheckFailed, match="already in .env: finish that rotation"):
        started(provider_world, "whatsapp", abandon_pending=True).create(NOTHING)
    assert provider_world.in_env("whatsapp") == first.new and first.provider.check(first.old).accepted
    run_all_steps(started(provider_world, "whatsapp"))
    assert not first.provider.check(first.old).accepted


def test_a_lost_pending_credential_stops_the_rerun_and_says_how_to_go_on(provider_world: ProviderWorld) -> None:
    first = started(provider_world, "twilio")
    first.create(NOTHING)
    state.discard_pending(provider_world.env_file, first.credential.type)
    with pytest.raises(CheckFailed, match="neither in .env nor in .rotation-pending.twilio_token") as caught:
        started(provider_world, "twilio").create(NOTHING)
    assert "--abandon-pending" in str(caught.value) and not leaked(str(caught.value), first.old, first.new)


def test_no_rotation_starts_without_a_backup_of_the_current_credential(provider_world: ProviderWorld) -> None:
    rotation = started(provider_world, "whatsapp")
    for backup in envfile.backups(provider_world.env_file):
        backup.unlink()
    with pytest.raises(CheckFailed, match="back up the configuration first"):
        rotation.create(NOTHING)
    assert state.load(provider_world.env_file, rotation.credential.type) is None


@dataclass
class HandsOver:
    """An operator's console that hands over a chosen password and remembers what it was told to revoke."""

    password: Secret
    revoked: list[Secret] = field(default_factory=list)

    def obtain(self) -> Secret:
        return self.password

    def retire(self, old: Secret) -> None:
        self.revoked.append(old)


def test_a_reused_credential_is_refused_before_anything_is_kept(provider_world: ProviderWorld) -> None:
    reused = provider_world.in_env("twilio")  # another credential's value, strong enough on its own
    console = HandsOver(reused)
    rotation = rotation_for(provider_world.deployment, credential_of("smtp"), ProviderOptions(STAGING_POLICY, console))
    envfile.backup(provider_world.env_file)
    before = provider_world.env_file.read_bytes()
    with pytest.raises(CheckFailed, match="another credential already uses this value") as caught:
        rotation.create(NOTHING)
    assert not leaked(str(caught.value), reused)
    assert state.load(provider_world.env_file, rotation.credential.type) is None
    assert not state.pending_path(provider_world.env_file, rotation.credential.type).exists()
    assert provider_world.env_file.read_bytes() == before and console.revoked == [reused]


def test_a_weak_password_is_refused_by_the_registrys_policy(provider_world: ProviderWorld) -> None:
    rotation = rotation_for(provider_world.deployment, credential_of("smtp"),
                            ProviderOptions(STAGING_POLICY, HandsOver(Secret("aaaaaaaaaaaaaaaaaaaa"))))
    envfile.backup(provider_world.env_file)
    with pytest.raises(ProviderError, match="different characters; at least 6"):
        rotation.create(NOTHING)
    assert state.load(provider_world.env_file, rotation.credential.type) is None


def test_the_old_credential_is_not_retired_before_the_new_one_was_tested(provider_world: ProviderWorld) -> None:
    rotation = started(provider_world, "twilio")
    until_set(rotation)
    reload_application(provider_world.deployment, NOTHING)
    with pytest.raises(CheckFailed, match="has not passed its test message in this run"):
        rotation.retire_old(NOTHING)
    assert rotation.provider.check(rotation.old).accepted


def test_an_app_a_killed_restart_left_stopped_is_started_by_the_background_saying_so(
        provider_world: ProviderWorld) -> None:
    """The provider's rotation is in progress (.env holds the new token) and its run died between the app's stop and
    start: the same rotation taken up again starts the app first and says which run stopped it."""
    pw, said = provider_world, []
    rotation = started(pw, "twilio")
    until_set(rotation)
    app_control.stop_app(pw.deployment.app, pw.env_file, run_id="killed-run", credential=rotation.credential.type,
                         operator="crash-test")  # what a kill -9 right after the restart's stop leaves
    assert not app_control.health(pw.deployment.app.health_url).healthy
    again = pw.rotation("twilio")
    again.running_with_current(again.label, NOTHING, notify=said.append)
    assert [line.split(" (")[0] for line in said] == ["the app was stopped by run killed-run"], said
    assert app_control.health(pw.deployment.app.health_url).healthy
    assert app_control.stopped_by(pw.env_file) is None


def test_an_app_a_database_key_rotation_in_progress_keeps_stopped_is_not_started(provider_world: ProviderWorld) -> None:
    """A DB key rotation in progress needs the app stopped (its data may be on the new key): a provider rotation
    started meanwhile leaves the app alone and refuses, naming that run."""
    pw = provider_world
    state.begin(pw.env_file, "db_encryption_key", current_fp="sha256:old", pending_fp="sha256:new", reason="test")
    app_control.stop_app(pw.deployment.app, pw.env_file, run_id="db-key-run", credential="db_encryption_key",
                         operator="crash-test")
    rotation = pw.rotation("twilio")
    with pytest.raises(CheckFailed, match="stopped by run db-key-run .* whose rotation is in progress"):
        rotation.running_with_current(rotation.label, NOTHING)
    assert not app_control.health(pw.deployment.app.health_url).healthy
    assert app_control.stopped_by(pw.env_file) is not None


def test_the_step_text_must_name_the_tagged_credential(provider_world: ProviderWorld) -> None:
    rotation = provider_world.rotation("smtp")
    with pytest.raises(CheckFailed, match="names the Twilio auth token, but its tag selects the SMTP password"):
        rotation.running_with_current("Twilio auth token", NOTHING)


def world_snapshot(pw: ProviderWorld) -> dict[str, str]:
    """A digest of everything a step could change: .env and its backups, the state and pending files, the stand-ins'
    credentials, the rotation log (digests, so that a failing comparison shows no credential)."""
    s = pw.standins
    with connect(pw.deployment.dsn) as conn:
        logged = conn.execute("SELECT count(*) FROM security_credential_rotations").fetchone()
    parts = {"files beside .env": sorted((p.name, p.read_bytes()) for p in pw.env_file.parent.glob(".*")
                                         if p.is_file()),
             "Twilio": (s.twilio.primary, s.twilio.secondary, s.twilio.retired),
             "Meta": (sorted(s.graph.tokens), sorted(s.graph.revoked)), "mail relay": sorted(s.smtp.passwords),
             "rotation log": logged}
    return {name: hashlib.sha256(repr(value).encode()).hexdigest()[:16] for name, value in parts.items()}


@pytest.mark.parametrize("name", ["twilio", "whatsapp", "smtp"])
def test_the_checks_only_read(provider_world: ProviderWorld, name: str) -> None:
    """A crash right after a check leaves exactly what a crash right before it leaves: the crash tests kill the
    operator's command after each step that acts, and this shows that the checks between them change nothing."""
    r, deployment = started(provider_world, name), provider_world.deployment
    acts_then_checks: list[tuple[str, Callable[[Evidence], None], list[Callable[[Evidence], None]]]] = [
        ("create", r.create, [r.test_before_deployment]),
        ("update", r.update_configuration, [r.check_configuration]),
        ("reload", lambda e: reload_application(deployment, e), [r.check_app_uses_new]),
        ("send", r.send_test_message, [r.check_test_message]),
        ("retire", r.retire_old, [r.check_old_rejected, r.check_new_still_works]),
        ("log", r.log, [lambda e: r.check_logged(r.credential.interval.days, e)]),
    ]
    for act, action, checks in acts_then_checks:
        action(NOTHING)
        before = world_snapshot(provider_world)
        for check in checks:
            check(NOTHING)
        changed = {k for k, v in world_snapshot(provider_world).items() if before[k] != v}
        assert not changed, f"the checks after {act} changed {changed}"
