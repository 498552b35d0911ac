"""Runbook "Emergency Rotation Procedure", Immediate Actions, for one compromised credential: revoke it, generate the
new one, update .env and restart immediately, prove the old one dead, log the rotation with reason "emergency".

Each method is one step of features/emergency/compromised_credential.feature (or compromised_db_key.feature), in
that order, and is idempotent over the four-step state (rotation.core.state), so the same command run again after a
kill at any point finishes the rotation:

    ProviderEmergency (Twilio auth token, WhatsApp access token, SMTP password)
    report_compromised  the compromised credential: the one in .env, or the one an interrupted run was replacing;
                        .env backed up first (the backup keeps it for the proof once .env has changed)
    revoke_and_replace  create: the replacement issued, refused unless .env can carry it, and persisted as PENDING
                        (mode 0600 beside .env); only then the compromised credential revoked at the provider, and the
                        revocation recorded in the state. A rerun revokes nothing twice and issues nothing again.
    check_rejected      Then: the provider refuses the compromised credential
    write_env           set: .env holds the replacement (only once the compromised credential is dead)
    restart             the app restarted immediately
    check_healthy       test: the app is healthy and proven on the replacement (rotation.core.app_proof)
    log                 finish: the rotation log row with reason "emergency" (once), PENDING becomes CURRENT
    check_logged        Then: the row, found by the compromised credential's hash

    DbKeyEmergency: the same frame around rotation.db_key's DbKeyRotation (app stopped first, new key, .env,
    re-encryption, proofs under both keys, restart, log).

Every step feeds the incident record (times to revoke and restore for the incident report and the notification).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rotation.core import app_control, app_proof, envfile, prerequisites, state
from rotation.core.clock import utc_now
from rotation.core.config import Credential
from rotation.core.database import connect
from rotation.core.deployment import Deployment
from rotation.core.keys import WeakSecretError, check_strength
from rotation.core.proof import CheckFailed, Evidence, require
from rotation.core.rotation_log import find_rotation, log_rotation
from rotation.core.secret import Secret
from rotation.db_key.procedure import DbKeyRotation
from rotation.emergency.incident import IncidentRecord, iso, parse_iso
from rotation.emergency.revoke import issue_replacement
from rotation.providers.base import CredentialCheck, Provider
from rotation.providers.revocation import RevocationAct, Wait, by_this_run, confirm_refused

REASON = "emergency"


class EmergencyProcedure(Protocol):
    """The steps every compromised credential shares (the Gherkin steps common to both scenarios call these)."""

    credential: Credential

    def report_compromised(self, label: str, evidence: Evidence) -> None: ...

    def restart(self, evidence: Evidence) -> None: ...

    def check_healthy(self, evidence: Evidence) -> None: ...

    def log(self, evidence: Evidence) -> None: ...

    def check_logged(self, evidence: Evidence) -> None: ...


def resumable(deployment: Deployment, credential: Credential) -> state.RotationState | None:
    """The unfinished emergency rotation of this credential an interrupted run left, if any."""
    current = state.load(deployment.env_file, credential.type)
    return current if current is not None and current.in_progress and current.reason == REASON else None


def _require_label(credential: Credential, label: str) -> None:
    require(label.strip().lower() == credential.label.lower(),
            f"the scenario names the {label!r} but is tagged for {credential.type} ({credential.label})")


def _record_compromised(evidence: Evidence, deployment: Deployment, credential: Credential, fp: str,
                        resumed: state.RotationState | None, backup: Path | None) -> None:
    value: dict[str, object] = {"credential_type": credential.type, "env": credential.env, "fingerprint": fp}
    if resumed is not None:
        value |= {"resuming rotation": resumed.rotation_id, "started": resumed.started_at,
                  "last step done": resumed.step, "revoked at": resumed.revoked_at}
    source = (f"{state.state_path(deployment.env_file).name}: an interrupted emergency rotation" if resumed
              else f"{deployment.env_file.name}: {credential.env}; backed up to {backup.name if backup else '-'}")
    evidence.record("compromised credential", value | {"env backup": backup.name if backup else None}, source=source)


# --- provider credentials ---------------------------------------------------------------------------------------------

@dataclass
class ProviderEmergency:
    deployment: Deployment
    credential: Credential
    provider: Provider
    incident: IncidentRecord
    reason: str = REASON
    revoke_wait: Wait = field(default_factory=Wait)  # --revoke-wait: how long a person's revocation may take
    _old: Secret | None = None
    _new: Secret | None = None
    _backup: Path | None = None

    @property
    def env_file(self) -> Path:
        return self.deployment.env_file

    @property
    def old(self) -> Secret:
        require(self._old is not None, "the compromised credential is not known yet (no report of it in this run)")
        assert self._old is not None
        return self._old

    @property
    def new(self) -> Secret:
        require(self._new is not None, "no replacement was issued in this run")
        assert self._new is not None
        return self._new

    def _state(self) -> state.RotationState:
        current = state.load(self.env_file, self.credential.type)
        require(current is not None, f"no emergency rotation of {self.credential.type} was started")
        assert current is not None
        return current

    # Given the <credential> is reported compromised
    def report_compromised(self, label: str, evidence: Evidence) -> None:
        _require_label(self.credential, label)
        resumed = resumable(self.deployment, self.credential)
        if resumed is None:
            self._backup = envfile.backup(self.env_file)
            self._old = envfile.get_secret(self.env_file, self.credential.env)
        else:
            self._backup = Path(resumed.backup) if resumed.backup else None
            self._old = self._find_old(resumed)
            self._new = self._find_pending(resumed)
        evidence.register_secret(self.old)
        if resumed is None:
            self.incident.begin(self.credential.type, self.old.fingerprint)
        else:
            self.incident.resume(self.credential.type, self.old.fingerprint, started_at=parse_iso(resumed.started_at),
                                 rotation_id=resumed.rotation_id,
                                 revoked_at=parse_iso(resumed.revoked_at) if resumed.revoked_at else None)
        _record_compromised(evidence, self.deployment, self.credential, self.old.fingerprint, resumed, self._backup)

    def _find_old(self, resumed: state.RotationState) -> Secret:
        """The compromised credential of an interrupted run: still in .env, or in the backup it took."""
        candidates = [self.env_file, *([Path(resumed.backup)] if resumed.backup else []),
                      *envfile.backups(self.env_file)]
        for candidate in candidates:
            value = envfile.read_env(candidate).get(self.credential.env, "") if candidate.exists() else ""
            if value and Secret(value).fingerprint == resumed.current_fp:
                return Secret(value)
        raise CheckFailed(f"the compromised {self.credential.type} {resumed.current_fp} of the interrupted rotation "
                          f"{resumed.rotation_id} is neither in {self.env_file.name} nor in any backup of it")

    def _find_pending(self, resumed: state.RotationState) -> Secret | None:
        """The replacement of an interrupted run: in .env once it got there, else in the pending file."""
        in_env = envfile.read_env(self.env_file).get(self.credential.env, "")
        for candidate in (Secret(in_env) if in_env else None, state.read_pending(self.env_file, self.credential.type)):
            if candidate is not None and candidate.fingerprint == resumed.pending_fp:
                return candidate
        return None

    # When the compromised credential is revoked at the provider and a replacement issued
    def revoke_and_replace(self, evidence: Evidence) -> None:
        actions = self._replacement(evidence)
        current = self._state()
        if current.revoked_at is None:
            actions += self._revoke(current)
            current = self._state()
        else:
            actions.append(f"compromised {self.old.fingerprint} already revoked at {current.revoked_at} by the "
                           "interrupted run: not revoked again")
        revoked_at = parse_iso(str(current.revoked_at))
        self.incident.outcomes[self.credential.type].new_fp = self.new.fingerprint
        self.incident.outcomes[self.credential.type].rotation_id = current.rotation_id
        if not self.incident.outcomes[self.credential.type].outage_from:
            self.incident.outage(self.credential.type, f"compromised credential killed at {self.provider.name}: the "
                                                       "app's credential is dead until the restart", at=revoked_at)
        evidence.record("provider actions, in order", {"rotation": current.rotation_id, "actions": actions,
                                                       "revoked at": current.revoked_at,
                                                       "pending": current.pending_fp},
                        source=f"{self.provider.name}: issue, persist as PENDING "
                               f"({state.pending_path(self.env_file, self.credential.type).name}, 0600), retire_old; "
                               f"{state.state_path(self.env_file).name}")

    def _replacement(self, evidence: Evidence) -> list[str | dict[str, str]]:
        """create: the replacement, issued and persisted as PENDING before anything is revoked (or the interrupted
        run's, found again)."""
        current = resumable(self.deployment, self.credential)
        if current is not None and self._new is not None:
            evidence.register_secret(self._new)
            return [f"replacement {self._new.fingerprint} issued by the interrupted run (PENDING): not issued again"]
        if current is not None and current.revoked_at is not None:
            raise CheckFailed(f"the compromised {self.credential.type} was revoked by the interrupted run "
                              f"{current.rotation_id}, but its replacement {current.pending_fp} is neither in "
                              f"{self.env_file.name} nor in the pending file: issue a new one at the provider's "
                              "console and put it in .env by hand")
        existing = state.load(self.env_file, self.credential.type)
        notes: list[str | dict[str, str]] = []
        if existing is not None and existing.in_progress and existing.reason != self.reason:
            notes.append(f"the unfinished rotation {existing.rotation_id} ({existing.reason!r}, PENDING "
                         f"{existing.pending_fp}, last step '{existing.step}') is abandoned: the emergency replaces it")
        new, action = issue_replacement(self.provider, self.old)
        evidence.register_secret(new)
        self._refuse_unusable(new)  # before anything is revoked
        state.write_pending(self.env_file, self.credential.type, new)
        state.begin(self.env_file, self.credential.type, current_fp=self.old.fingerprint, pending_fp=new.fingerprint,
                    reason=self.reason, backup=self._backup, abandon=True)
        self._new = new
        return [*notes, action.as_evidence()]

    def _refuse_unusable(self, new: Secret) -> None:
        """A replacement .env cannot carry exactly, or one its strength policy refuses (too short, unchanged, used by
        another credential), is refused while the compromised credential still works, so the app keeps running."""
        envfile.encode_value(new, name=f"the new {self.credential.env}")
        env = envfile.read_env(self.env_file)
        others = [Secret(env[c.env]) for c in self.deployment.config.credentials
                  if c.type != self.credential.type and env.get(c.env)]
        try:
            check_strength(new, self.credential.strength, name=f"the new {self.credential.label}", current=self.old,
                           others=others)
        except WeakSecretError as exc:
            raise CheckFailed(f"{exc}; nothing was revoked") from None

    def _revoke(self, current: state.RotationState) -> list[str | dict[str, str]]:
        """Kill the compromised credential and prove it dead (rotation.providers.revocation, the provider rotation's
        own mechanism): revoked by this run through the API, or by the operator at a console only a person can use,
        asked at their terminal or, without one, waited for up to --revoke-wait. Only a definitive refusal counts;
        without one nothing is recorded as revoked and the run stops here, resumable. Already refused (an earlier
        run or the operator got there first): nobody is asked again, and the record says it was found so."""
        before = self.provider.check(self.old)
        if before.answer is CredentialCheck.REFUSED:
            found = self.incident.note(f"{self.credential.type}: compromised credential found refused by "
                                       f"{self.provider.name} ({before.status}/{before.code}): revoked before this "
                                       "run asked", self.credential.type)
            state.record_revoked(self.env_file, self.credential.type, found)
            return [f"compromised {self.old.fingerprint} already refused by {self.provider.name} "
                    f"({before.status}/{before.code}): revoked before this run asked; not revoked again"]
        asked = utc_now()
        act = self.provider.retire_old(self.old, self.new)
        done = act if isinstance(act, RevocationAct) else by_this_run(f"{self.provider.name} API")
        self.incident.note(f"{self.credential.type}: {_asked_sentence(done, self.provider.name)}",
                           self.credential.type, asked)
        revocation = confirm_refused(lambda: self.provider.check(self.old), done, self.revoke_wait)
        observed = utc_now()  # the last check, the one that answered, returned just now
        if done.done_at and done.by != "this run":
            self.incident.note(f"{self.credential.type}: {done.by} confirmed the revocation", self.credential.type,
                               parse_iso(done.done_at))
        if not revocation.proven:
            self.incident.note(f"{self.credential.type}: {revocation.sentence()}; waiting for the operator",
                               self.credential.type, observed)
            self.incident.waiting(self.credential.type, revocation.sentence())
            raise CheckFailed(f"{self.provider.name}: the compromised {self.credential.label} {self.old.fingerprint}: "
                              f"{revocation.sentence()}. Revoke it at the provider's console, then run the same "
                              "command again (it resumes here; nothing is issued or revoked twice)")
        self.incident.note(f"{self.credential.type}: refusal of the compromised credential first observed "
                           f"({revocation.reply})", self.credential.type, observed)
        state.record_revoked(self.env_file, self.credential.type, observed)
        return [{"at": iso(observed) or "", "what": revocation.sentence()}]

    def _resumed(self) -> bool:
        """True when an earlier run wrote the state (a fresh one issued the replacement moments ago)."""
        return self.incident.outcomes[self.credential.type].resumed

    # Then the provider rejects the compromised credential
    def check_rejected(self, evidence: Evidence) -> None:
        result = self.provider.check(self.old)
        evidence.record("compromised credential at the provider", result.as_evidence(),
                        source=f"{self.provider.name}: read-only call with the compromised credential")
        require(not result.accepted, f"{self.provider.name}: the compromised credential {result.credential_fp} is "
                                     f"still accepted after revocation ({result.detail})")
        require(result.answer is CredentialCheck.REFUSED, f"{self.provider.name}: no definitive answer about the "
                                                          f"compromised credential {result.credential_fp} "
                                                          f"({result.status}: {result.detail}); run again to ask again")
        self.incident.outcomes[self.credential.type].rejection = f"rejected {result.status}/{result.code}"
        revoked_at = self._state().revoked_at  # when the refusal was first observed (this run or an earlier one)
        self.incident.revoked(self.credential.type, self.new.fingerprint,
                              f"provider rejects the compromised credential ({result.status}/{result.code})",
                              at=parse_iso(revoked_at) if revoked_at else None)

    # When the .env file is updated with the new credential
    def write_env(self, evidence: Evidence) -> None:
        current = self._state()
        require(current.revoked_at is not None, f"the replacement {self.new.fingerprint} would reach .env while the "
                                                f"compromised {self.old.fingerprint} is alive (no overlap window)")
        found = envfile.read_env(self.env_file)  # as this step found it: other credentials' steps may have run since
        already = envfile.get_secret(self.env_file, self.credential.env) == self.new
        if not already:
            envfile.set_value(self.env_file, self.credential.env, self.new)
        state.advance(self.env_file, self.credential.type, "set")
        at = self.incident.note(f"{self.credential.type}: .env updated with the new credential", self.credential.type)
        changed = _other_settings_changed(found, envfile.read_env(self.env_file), self.credential.env)
        mode = envfile.file_mode(self.env_file)
        evidence.record(".env updated", {self.credential.env: self.new.fingerprint, "at": iso(at),
                                         "already held it (interrupted run)": already, "mode": oct(mode),
                                         "compromised credential dead since": current.revoked_at,
                                         "other settings changed": changed},
                        source=f"{self.env_file.name}: atomic rewrite (temp file, fsync, rename), read back with "
                               "python-dotenv; compared with the file as this step found it")
        require(mode == 0o600, f"{self.env_file.name} has mode {oct(mode)}, not 0600")
        require(not changed, f"other settings of {self.env_file.name} changed: {', '.join(changed)}")

    # When the application services are restarted immediately
    def restart(self, evidence: Evidence) -> None:
        prerequisites.restart_app(self.deployment, evidence)
        self.incident.note("application restarted", self.credential.type)

    # Then the system is healthy again on the new credential
    def check_healthy(self, evidence: Evidence) -> None:
        _check_healthy_on(self.deployment, self.credential, self.new, self.incident, evidence)
        state.advance(self.env_file, self.credential.type, "test")

    # When the rotation is logged with reason "emergency"
    def log(self, evidence: Evidence) -> None:
        with connect(self.deployment.dsn) as conn:
            found = find_rotation(conn, self.credential, self.old)
            record = found or log_rotation(conn, self.credential, rotated_by=self.deployment.operator,
                                           previous=self.old, reason=self.reason)
        current = state.advance(self.env_file, self.credential.type, "finish")
        state.discard_pending(self.env_file, self.credential.type)
        self.incident.finished(self.credential.type)
        evidence.record("rotation logged", {**record.as_evidence(), "already logged (interrupted run)": bool(found),
                                            "rotation": current.rotation_id, "state": current.step},
                        source="INSERT INTO the rotation log (previous_key_hash: SHA-256 of the compromised "
                               "credential)")

    # Then the rotation log records the emergency rotation of the compromised credential
    def check_logged(self, evidence: Evidence) -> None:
        _check_logged(self.deployment, self.credential, self.old, self.reason, evidence)


def _asked_sentence(act: RevocationAct, provider: str) -> str:
    if act.by == "this run":
        return f"revocation requested from {provider} ({act.how})"
    return f"{act.by} asked to revoke the compromised credential ({act.how})"


def _other_settings_changed(before: dict[str, str], after: dict[str, str], name: str) -> list[str]:
    """The variables other than `name` whose value differs between .env as the step found it and as it left it. Not
    the backup of the run's start: in an incident another credential's step (the DB key) changes its own line first."""
    return sorted(k for k in before.keys() | after.keys() if k != name and before.get(k) != after.get(k))


def _check_healthy_on(deployment: Deployment, credential: Credential, new: Secret, incident: IncidentRecord,
                      evidence: Evidence) -> None:
    """Healthy, and proven on the new credential with the app's real endpoints (rotation.core.app_proof): the DB key
    by the configured probe (or the process start), a provider credential by the process start after .env changed."""
    result = app_control.wait_for_health(deployment.app.health_url, timeout_s=deployment.app.health_timeout_s)
    proof = (app_proof.prove_key(deployment.app, deployment.config, deployment.dsn, deployment.env_file, new)
             if credential.provider == "database" else app_proof.started_after(deployment.app, deployment.env_file))
    evidence.record("health after the emergency rotation", {"status": result.status_code, "body": result.body,
                                                            "expected": new.fingerprint, **proof.detail},
                    source=f"GET {deployment.app.health_url}; {proof.method}")
    require(result.healthy, f"the app is not healthy after the emergency rotation: {result.answer}")
    require(proof.proven, f"the app is not proven on the new {credential.type} {new.fingerprint}: {proof.why}")
    incident.restored(credential.type, "application healthy on the new credential")
    outcome = incident.outcomes[credential.type]
    evidence.record("time to revoke and restore", outcome.as_evidence(), source="the clock at each step (UTC)")


def _check_logged(deployment: Deployment, credential: Credential, old: Secret, reason: str,
                  evidence: Evidence) -> None:
    with connect(deployment.dsn) as conn:
        found = find_rotation(conn, credential, old)
    evidence.record("rotation log row", found.as_evidence() if found else None,
                    source=f"SELECT ... WHERE credential_type = '{credential.type}' AND previous_key_hash = "
                           "sha256(the compromised credential)")
    require(found is not None, f"no {credential.type} rotation retiring {old.fingerprint} is logged")
    assert found is not None
    require(found.rotation_reason == reason, f"the rotation is logged with reason {found.rotation_reason!r}, "
                                             f"not {reason!r}")
    require(found.rotated_by == deployment.operator, f"the rotation is logged as done by {found.rotated_by!r}, "
                                                     f"not {deployment.operator!r}")


# --- the database encryption key ------------------------------------------------------------------------------------

@dataclass
class DbKeyEmergency:
    """A compromised database encryption key: the app is stopped first so that nothing reads with it, then the
    DB-key procedure (built with reason "emergency") runs its steps; this adds the incident's record around them."""

    deployment: Deployment
    credential: Credential
    rotation: DbKeyRotation
    incident: IncidentRecord

    # Given the database encryption key is reported compromised
    def report_compromised(self, label: str, evidence: Evidence) -> None:
        _require_label(self.credential, label)
        current = state.load(self.deployment.env_file, self.credential.type)
        # The DB-key procedure finishes any rotation in progress (it moves the data off the compromised key as well)
        resumed = current if current is not None and current.in_progress else None
        backup = None if resumed else envfile.backup(self.deployment.env_file)
        in_env = envfile.get_secret(self.deployment.env_file, self.credential.env)
        evidence.register_secret(in_env)
        fp = (resumed.current_fp or in_env.fingerprint) if resumed else in_env.fingerprint
        if resumed is None:
            self.incident.begin(self.credential.type, fp)
        else:
            self.incident.resume(self.credential.type, fp, started_at=parse_iso(resumed.started_at),
                                 rotation_id=resumed.rotation_id, revoked_at=None)
        _record_compromised(evidence, self.deployment, self.credential, fp, resumed, backup)
        if resumed is None:
            self._start_app_an_earlier_run_stopped(evidence)

    def _start_app_an_earlier_run_stopped(self, evidence: Evidence) -> None:
        """An earlier run of this incident stopped the app and was killed before it changed the key: nothing reads
        with a new key yet, so the app is started again on the key it had (the outage keeps counting from that
        first stop) and this run starts the rotation over, saying so."""
        outcome = self.incident.outcomes[self.credential.type]
        if outcome.outage_from is None or outcome.restored_at is not None:
            return
        if app_control.health(self.deployment.app.health_url).healthy:
            return
        prerequisites.start_app(self.deployment, evidence)
        started = app_control.wait_for_health(self.deployment.app.health_url,
                                              timeout_s=self.deployment.app.health_timeout_s)
        self.incident.note(f"{self.credential.type}: application started again (stopped by an earlier run of this "
                           "incident that ended before changing the key)", self.credential.type)
        evidence.record("application stopped by an earlier run of this incident", {
            "stopped at": iso(outcome.outage_from), "started again": started.healthy,
            "health": started.status_code}, source=f"the incident record; {self.deployment.app.start}")

    # When the application services are stopped so that nothing reads with the compromised key
    def stop_app(self, evidence: Evidence) -> None:
        prerequisites.stop_app(self.deployment, evidence, self.credential)
        self.incident.outage(self.credential.type, "application stopped: nothing reads with the compromised key")

    # When a replacement database encryption key is generated
    def generate_key(self, evidence: Evidence) -> None:
        self.rotation.generate_key(evidence)
        self.rotation.find_unopened(evidence)  # values no key opens: left as found (the verdict names them)
        evidence.register_secret(self.rotation.new_key)
        self.incident.outcomes[self.credential.type].new_fp = self.rotation.new_key.fingerprint
        self.incident.outcomes[self.credential.type].rotation_id = self.rotation.rotation_id

    # When the .env file is updated with the replacement key
    def write_env(self, evidence: Evidence) -> None:
        self.rotation.write_env(evidence)
        self.incident.note(f"{self.credential.type}: .env updated with the new key", self.credential.type)

    # Then the .env file holds the replacement key and keeps every other setting
    def check_env(self, evidence: Evidence) -> None:
        self.rotation.check_env(evidence)

    # When all sensitive data is re-encrypted under the replacement key
    def reencrypt(self, evidence: Evidence) -> None:
        self.rotation.reencrypt(evidence)
        self.incident.note(f"{self.credential.type}: every encrypted value re-encrypted", self.credential.type)

    # Then every encrypted value decrypts with the replacement key to its original plaintext
    def verify_new_key(self, evidence: Evidence) -> None:
        self.rotation.verify_new_key(evidence)

    # Then the compromised key decrypts no value any more
    def verify_old_key_dead(self, evidence: Evidence) -> None:
        self.rotation.verify_old_key_dead(evidence)
        self.incident.outcomes[self.credential.type].rejection = "opens no value"
        self.incident.revoked(self.credential.type, self.rotation.new_key.fingerprint,
                              "revoked: every value re-encrypted, the compromised key opens none")

    # When the application services are restarted immediately
    def restart(self, evidence: Evidence) -> None:
        prerequisites.restart_app(self.deployment, evidence)
        self.incident.note("application restarted", self.credential.type)

    # Then the system is healthy again on the new credential
    def check_healthy(self, evidence: Evidence) -> None:
        self.rotation.check_app_key(evidence)
        _check_healthy_on(self.deployment, self.credential, self.rotation.new_key, self.incident, evidence)

    # When the rotation is logged with reason "emergency"
    def log(self, evidence: Evidence) -> None:
        self.rotation.log(evidence)
        self.incident.finished(self.credential.type)

    # Then the rotation log records the emergency rotation of the compromised credential
    def check_logged(self, evidence: Evidence) -> None:
        self.rotation.check_logged(evidence)
        _check_logged(self.deployment, self.credential, self.rotation.old_key, REASON, evidence)
