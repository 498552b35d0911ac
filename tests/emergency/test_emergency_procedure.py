"""The emergency rotation of a provider credential, step by step against the real stand-ins through the real clients:
the replacement is persisted as PENDING before the compromised credential is revoked, the revocation is recorded in
the state, and a new run after an interruption at any point revokes nothing twice and loses nothing. Counted at the
provider: Twilio's promotions, Graph's revocations, the SMTP console's revocations."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rotation.core import envfile, state
from rotation.core.app_control import AppCommands
from rotation.core.config import Credential, default_config
from rotation.core.deployment import Deployment
from rotation.core.proof import CheckFailed, NoEvidence
from rotation.core.secret import Secret
from rotation.emergency.incident import IncidentRecord
from rotation.emergency.procedure import ProviderEmergency
from rotation.providers.base import Provider, ProviderError, RetryPolicy
from rotation.providers.factory import provider_for
from rotation.providers.smtp import OperatorConsole, SmtpProvider, SmtpSettings
from staging.provider_standins import ProviderStandIns, provider_standins
from staging.smtp_standin import StandInConsole
from staging.world import write_env

CONFIG = default_config()
PROVIDER_CREDENTIALS = [c for c in CONFIG.credentials if c.provider != "database"]
RETRIES = RetryPolicy(attempts=3, first_delay_s=0.01, max_delay_s=0.05, timeout_s=2.0)
NOTHING = NoEvidence()


@dataclass
class CountingConsole:
    """The SMTP stand-in's console, counting what the rotation asked of it."""

    console: StandInConsole
    retired: list[str] = field(default_factory=list)

    def obtain(self) -> Secret:
        return self.console.obtain()

    def retire(self, old: Secret) -> None:
        self.retired.append(old.fingerprint)
        self.console.retire(old)


@dataclass
class Incident:
    """A stand-in world for one credential: .env, the provider, and how many revocations the provider has seen."""

    standins: ProviderStandIns
    deployment: Deployment
    credential: Credential
    smtp_console: CountingConsole

    def provider(self) -> Provider:
        env = envfile.read_env(self.deployment.env_file)
        return provider_for(self.credential.provider, env, policy=RETRIES, smtp_console=self.smtp_console)

    def run(self) -> ProviderEmergency:
        """A new run of the procedure (a new process after a kill would build exactly this)."""
        return ProviderEmergency(self.deployment, self.credential, self.provider(), IncidentRecord())

    def revocations(self) -> int:
        counts: dict[str, Callable[[], int]] = {
            "twilio": lambda: sum(1 for m, p, s in self.standins.twilio.requests
                                  if (m, p, s) == ("POST", "/v1/AuthTokens/Promote", 200)),
            "whatsapp": lambda: sum(1 for m, p, s in self.standins.graph.requests
                                    if m == "POST" and p.endswith("/oauth/revoke") and s == 200),
            "smtp": lambda: len(self.smtp_console.retired),
        }
        return counts[self.credential.provider]()

    def in_env(self) -> Secret:
        return envfile.get_secret(self.deployment.env_file, self.credential.env)

    def state(self) -> state.RotationState:
        found = state.load(self.deployment.env_file, self.credential.type)
        assert found is not None
        return found


@pytest.fixture(params=PROVIDER_CREDENTIALS, ids=lambda c: c.type)
def incident(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Incident]:
    with provider_standins(tmp_path / "providers") as standins:
        env_file = tmp_path / "app" / ".env"
        env_file.parent.mkdir()
        write_env(env_file, {"DATABASE_URL": "postgresql:///unused", **standins.env()})
        app = AppCommands(start="true", stop="true", restart="true", reload=None, health_url="http://127.0.0.1:9/")
        deployment = Deployment("staging", "", env_file, app, CONFIG, "ops")
        yield Incident(standins, deployment, request.param, CountingConsole(standins.smtp_console))


def reported(run: ProviderEmergency) -> ProviderEmergency:
    run.report_compromised(run.credential.label, NOTHING)
    return run


def test_the_replacement_is_pending_before_the_compromised_credential_is_revoked(incident: Incident) -> None:
    compromised = incident.in_env()
    run = reported(incident.run())
    run.revoke_and_replace(NOTHING)
    current = incident.state()
    pending = state.read_pending(incident.deployment.env_file, incident.credential.type)
    assert pending is not None and pending.fingerprint == current.pending_fp == run.new.fingerprint
    assert current.step == "create" and current.revoked_at is not None and current.reason == "emergency"
    assert current.current_fp == compromised.fingerprint
    assert incident.revocations() == 1
    provider = incident.provider()
    assert not provider.check(compromised).accepted, "the compromised credential still works"
    assert provider.check(pending).accepted, "the replacement does not work"
    assert incident.in_env() == compromised, ".env changed before the step that updates it"
    run.check_rejected(NOTHING)


def test_a_new_run_after_the_revocation_finishes_without_revoking_again(incident: Incident) -> None:
    first = reported(incident.run())
    first.revoke_and_replace(NOTHING)
    replacement, rotation_id = first.new, incident.state().rotation_id
    second = reported(incident.run())  # the killed run's successor
    assert second.incident.outcomes[incident.credential.type].resumed
    second.revoke_and_replace(NOTHING)
    second.check_rejected(NOTHING)
    second.write_env(NOTHING)
    assert incident.revocations() == 1, "the compromised credential was revoked a second time"
    assert second.new == replacement and incident.in_env() == replacement
    assert incident.state().rotation_id == rotation_id and incident.state().step == "set"


def test_a_new_run_after_the_env_update_keeps_the_replacement(incident: Incident) -> None:
    first = reported(incident.run())
    first.revoke_and_replace(NOTHING)
    first.write_env(NOTHING)
    replacement = first.new
    second = reported(incident.run())
    assert second.old == first.old, "the compromised credential was not found in the backup"
    second.revoke_and_replace(NOTHING)
    second.write_env(NOTHING)
    assert incident.revocations() == 1 and incident.in_env() == replacement
    assert incident.provider().check(replacement).accepted


def test_a_run_killed_between_the_revocation_and_its_record_does_not_revoke_again(incident: Incident) -> None:
    first = reported(incident.run())
    first.revoke_and_replace(NOTHING)
    path = state.state_path(incident.deployment.env_file)
    states = json.loads(path.read_text())
    states[incident.credential.type]["revoked_at"] = None  # the provider call returned, the record did not happen
    path.write_text(json.dumps(states))
    second = reported(incident.run())
    second.revoke_and_replace(NOTHING)
    assert incident.revocations() == 1
    assert incident.state().revoked_at is not None
    second.check_rejected(NOTHING)


def test_the_env_file_is_not_updated_while_the_compromised_credential_lives(incident: Incident) -> None:
    run = reported(incident.run())
    run.revoke_and_replace(NOTHING)
    path = state.state_path(incident.deployment.env_file)
    states = json.loads(path.read_text())
    states[incident.credential.type]["revoked_at"] = None
    path.write_text(json.dumps(states))
    before = incident.deployment.env_file.read_bytes()
    with pytest.raises(CheckFailed, match="no overlap window"):
        run.write_env(NOTHING)
    assert incident.deployment.env_file.read_bytes() == before


@contextlib.contextmanager
def smtp_password_from_operator(tmp_path: Path, password: str) -> Iterator[tuple[ProviderEmergency, Path]]:
    """The SMTP emergency with the operator handing over `password` as the replacement, reported compromised."""
    credential = CONFIG.credential("smtp")
    with provider_standins(tmp_path / "providers") as standins:
        env_file = tmp_path / ".env"
        write_env(env_file, standins.env())
        app = AppCommands(start="true", stop="true", restart="true", reload=None, health_url="http://127.0.0.1:9/")
        deployment = Deployment("staging", "", env_file, app, CONFIG, "ops")
        provider = SmtpProvider(SmtpSettings.from_env(envfile.read_env(env_file), RETRIES),
                                OperatorConsole(environ={"SMTP_NEW_PASSWORD": password}))
        yield reported(ProviderEmergency(deployment, credential, provider, IncidentRecord())), env_file


@pytest.mark.parametrize(("password", "refusal"), [
    ("new-password-${HOME}-0123456789", "python-dotenv replaces"),  # .env cannot carry it exactly
    ("a" * 37, "is refused: .*different characters"),  # long enough, but too few distinct characters
], ids=["unrepresentable", "weak"])
def test_an_unusable_replacement_is_refused_before_anything_is_revoked(tmp_path: Path, password: str,
                                                                        refusal: str) -> None:
    with smtp_password_from_operator(tmp_path, password) as (run, env_file):
        with pytest.raises((envfile.EnvFileError, CheckFailed, ProviderError), match=refusal):
            run.revoke_and_replace(NOTHING)
        assert run.provider.check(run.old).accepted, "the compromised credential was revoked all the same"
        assert state.load(env_file, run.credential.type) is None


def test_a_label_that_does_not_match_the_tag_is_refused(incident: Incident) -> None:
    other = next(c for c in CONFIG.credentials if c.type != incident.credential.type)
    with pytest.raises(CheckFailed, match="is tagged for"):
        incident.run().report_compromised(other.label, NOTHING)
