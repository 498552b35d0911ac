"""Runbook sections 2-4 (WhatsApp access token, Twilio auth token, SMTP password) as one procedure whose methods are
the steps of the three features, in their order. The feature an auditor reads is what `rotation provider rotate`
runs, through these methods.

    running_with_current      the app is healthy on the credential .env holds
    create                    create: the provider issues the new credential; it must pass the registry's strength
                              policy (and differ from every value in use) before anything is kept; it then waits in
                              `.rotation-pending.<type>` (mode 0600) until .env holds it
    test_before_deployment    the runbook's "test before full deployment": a read-only call with the new credential
    update_configuration      set: .env holds the new credential (atomic, read back)
    check_configuration       .env: the new credential, mode 0600, every other setting as in the backup
    reload_application        the runbook's reload (restart where reload is not supported)
    check_app_uses_new        the app runs on the new credential
    send_test_message         SMS / WhatsApp text / e-mail to the admin recipient with the new credential
    check_test_message        Twilio: delivered (polled to a final status within a bounded wait); WhatsApp / SMTP:
                              accepted by Meta / by the relay (250), delivered only where the app's records or a
                              staging mailbox prove it; failed wherever anyone says so
    retire_old                test: Twilio promotes the new token, Meta revokes the old one, the operator revokes the
                              password (only once this run's test message passed)
    check_old_rejected        the provider refuses the old credential
    check_new_still_works     the new credential works and the app is healthy
    log                       finish: the rotation log row, once; PENDING becomes CURRENT
    check_logged              the row: previous credential's hash, reason, next rotation due

Every step is idempotent over the four-step state (rotation.core.state). A rerun after a crash at any point runs
the same steps: `create` finds the rotation in progress and recovers its credentials (the new one from .env or the
pending file, the old one from .env or the backup), and each later step skips what is already done or finishes it,
recording which. The checks (the Then steps) only read, so a crash after one leaves what a crash after the step
before it leaves. Every run records the rotation id. At any failure .env, its backup and the provider agree and the
app runs on a credential the provider accepts: .env gets the new credential only after it passed the read-only
call, and the old one is retired only after the app ran on the new one and a test message went out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rotation.core import app_control, app_proof, envfile, prerequisites, signals, state
from rotation.core.app_control import Health
from rotation.core.config import Credential
from rotation.core.database import connect
from rotation.core.deployment import Deployment
from rotation.core.keys import WeakSecretError, check_strength
from rotation.core.proof import CheckFailed, Evidence, require
from rotation.core.rotation_log import RotationRecord, find_rotation, log_rotation
from rotation.core.safe_state import SafeState, env_holds, untold
from rotation.core.secret import Secret
from rotation.providers import safe_state
from rotation.providers.base import (
    CheckResult,
    CredentialCheck,
    Delivery,
    DeliveryReport,
    DeliveryWitness,
    ExistingCredential,
    Provider,
    ProviderError,
    SendAnswerLost,
    provider_journal,
)
from rotation.providers.revocation import (
    Revocation,
    RevocationAct,
    Wait,
    by_this_run,
    confirm_refused,
    now,
    undecided,
)

TEST_MESSAGE = "Credential rotation test ({label}): if you received this, the new credential works."
LOG_SOURCE = ("INSERT INTO security_credential_rotations (credential_type, rotated_by, previous_key_hash, "
              "rotation_reason, next_rotation_due) VALUES (%(type)s, %(by)s, sha256(old credential), %(reason)s, "
              "now() + interval); once per rotation: an existing row with the same previous_key_hash is kept")
LOG_READ_SOURCE = ("SELECT rotation_id, rotated_at, rotated_by, previous_key_hash, rotation_reason, next_rotation_due "
                   "FROM security_credential_rotations WHERE credential_type = %s AND previous_key_hash = %s")


@runtime_checkable
class OperatorInput(Protocol):
    """A provider whose new credential comes from the operator (SMTP: created at the provider's console). Such a
    credential is never kept on disk: a rerun takes it from the operator again, and a different one the operator
    gives a rerun replaces the pending one (the evidence records the replacement)."""

    def offered(self) -> Secret | None: ...  # what the operator handed to this run without being asked


@runtime_checkable
class CheckedInputs(Protocol):
    """A provider that can name every setting its later steps read, before anything changes."""

    def input_problems(self) -> dict[str, str]: ...  # setting -> its fix, for each missing or unusable one

    def inputs(self) -> dict[str, object]: ...  # the settings found, for the evidence (no secrets)


def scheduled_reason(credential: Credential) -> str:
    return f"Scheduled {credential.interval.days}-day rotation"


def app_check(health: Health, name: str) -> dict[str, object]:
    """The app's own check of one provider in its health body, when it reports one (the staging app does)."""
    checks = health.body.get("checks")
    check = checks.get(name) if isinstance(checks, dict) else None
    return check if isinstance(check, dict) else {}


def app_credential(health: Health, name: str) -> str | None:
    """The fingerprint of the credential the app reports for this provider, or None when it reports none (the
    production app's /health names no credential)."""
    reported = app_check(health, name).get("credential_fingerprint")
    return str(reported) if reported else None


JOURNAL_SOURCE = ("the adapter's journal: each wait before a retry (the provider's Retry-After, else the backoff) and "
                  "each answer lost after the request reached the provider, with how it was reconciled")


def journaled(step: Callable[..., None]) -> Callable[..., None]:
    """A step that calls the provider records, whether it passes or fails, what the adapter noted meanwhile."""
    @functools.wraps(step)
    def run(self: ProviderRotation, *args: Any, **kwargs: Any) -> None:
        try:
            step(self, *args, **kwargs)
        finally:
            entries = provider_journal(self.provider)
            if entries:
                evidence: Evidence = kwargs["evidence"] if "evidence" in kwargs else args[-1]
                evidence.record(f"{self.provider.name}: waits and lost answers", self._tag({"entries": entries}),
                                source=JOURNAL_SOURCE)
    return run


def reload_application(deployment: Deployment, evidence: Evidence, credential: Credential | None = None) -> None:
    """The runbook's `systemctl reload event-planning-api`, or restart where reload is not supported. A restart is the
    app's stop then start (app_control.restart_app): a run killed between them leaves the stop record, and the next
    run's Background starts the app again, saying which run stopped it."""
    app = deployment.app
    how = app_control.reload_or_restart(app, restart=lambda: app_control.restart_app(
        app, deployment.env_file, run_id=prerequisites.run_id_of(evidence),
        credential=credential.type if credential else "none", operator=deployment.operator))
    command = app.reload if how == "reload" else f"{app.stop}; {app.start}"
    # A restart is an outage, however short: the evidence says which it was, and the report measures the window.
    evidence.record("application reloaded" if how == "reload" else "application restarted", {
        "how": how, "downtime": "none expected (graceful reload)" if how == "reload" else
        "yes: the app is down from the restart command until it answers healthy again"}, source=command)


class ProviderRotation:
    """One credential's rotation at its provider, step by step (see the module docstring)."""

    def __init__(self, deployment: Deployment, credential: Credential, provider: Provider, *, reason: str | None = None,
                 abandon_pending: bool = False, witness: DeliveryWitness | None = None,
                 replace_secondary: bool = False, revoke_wait: Wait | None = None) -> None:
        if provider.credential_type != credential.type:
            raise ValueError(f"the {provider.name} adapter rotates {provider.credential_type}, not {credential.type}")
        self.deployment, self.credential, self.provider = deployment, credential, provider
        self.reason = reason or scheduled_reason(credential)
        self.abandon_pending, self.witness = abandon_pending, witness
        self.replace_secondary = replace_secondary  # discard a pending credential at the provider this run did not make
        self.revoke_wait = revoke_wait or Wait()  # how long to ask the provider whether a revocation took effect
        self._old: Secret | None = None
        self._new: Secret | None = None
        self._rotation_id = ""
        self._delivery: Delivery | None = None
        self._tested = False  # this run's test message passed its check
        self._found_after_loss: DeliveryReport | None = None  # a test message whose answer was lost, found arrived
        self._old_refused = False  # this run saw the provider refuse the old credential definitively

    # --- what the steps share -------------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.credential.label

    @property
    def env_file(self) -> Path:
        return self.deployment.env_file

    @property
    def old(self) -> Secret:
        if self._old is None:
            raise CheckFailed(f"no {self.label} rotation was started in this run: the step that creates the new "
                              f"{self.label} did not run")
        return self._old

    @property
    def new(self) -> Secret:
        if self._new is None:
            raise CheckFailed(f"no new {self.label} was created in this run")
        return self._new

    @property
    def rotation_id(self) -> str:
        return self._rotation_id

    def _state(self) -> state.RotationState | None:
        return state.load(self.env_file, self.credential.type)

    def _in_env(self) -> Secret:
        return envfile.get_secret(self.env_file, self.credential.env)

    def _from_backups(self, fingerprint: str | None) -> tuple[Path, Secret] | None:
        """The newest .env backup holding the credential with this fingerprint."""
        for backup in envfile.backups(self.env_file):
            value = envfile.read_env(backup).get(self.credential.env, "")
            if value and Secret(value).fingerprint == fingerprint:
                return backup, Secret(value)
        return None

    def _tag(self, values: dict[str, object]) -> dict[str, object]:
        return {"rotation": self._rotation_id, **values}

    def _ask(self, credential: Secret) -> CheckResult:
        """The provider's answer about a credential; an error (unreachable, unexpected) is an UNDECIDED answer."""
        try:
            return self.provider.check(credential)
        except ProviderError as exc:
            return undecided(self.provider.name, credential.fingerprint, exc)

    @property
    def _operator_supplied(self) -> bool:
        return isinstance(self.provider, OperatorInput)

    def _check_inputs(self, evidence: Evidence) -> None:
        """Every setting a later step reads (recipient, sender, CA file, provider ids) found before anything
        changes: a missing one is named with its fix now, not after .env changed and the app restarted."""
        if not isinstance(self.provider, CheckedInputs):
            return
        problems = self.provider.input_problems()
        evidence.record(f"settings the {self.label} rotation reads", {
            **self.provider.inputs(), "missing or unusable": sorted(problems)},
            source=f"{self.env_file.name}, read before any change")
        require(not problems, "settings a later step needs are missing or unusable, so nothing was changed: "
                              + "; ".join(f"{name}: {fix}" for name, fix in problems.items()))

    # --- the end of every run (rotation.providers.safe_state) -------------------------------------------------------
    def settle(self, evidence: Evidence, *, next_command: str = safe_state.DEFAULT_NEXT) -> SafeState:
        """Where the rotation stands, in one line with the command to run next: at the end of every run (the
        scenario's teardown, also after Ctrl-C or SIGTERM). It only reads (every stop of this procedure is safe by
        design) and never raises; a signal that arrives meanwhile is held until it is done."""
        next_command = next_command.replace("<provider>", self.credential.provider)  # the default's placeholder
        with signals.shielded():
            try:
                progress = self._state()
                app, app_ok = safe_state.app_now(self.deployment.app)
                result = safe_state.describe(safe_state.decide(progress, self._rotation_id), label=self.label,
                                             progress=progress, app=app, app_ok=app_ok, next_command=next_command,
                                             env_fp=env_holds(self.env_file, self.credential.env))
            except Exception as exc:  # noqa: BLE001  (the operator must get the line whatever happened)
                result = untold(exc, next_command)
        evidence.record("where the rotation stands", {**result.detail, "reached": result.reached,
                                                      "next step": result.line},
                        source=f"{state.state_path(self.env_file).name} (four-step state), {self.env_file.name} by "
                               f"fingerprint, GET {self.deployment.app.health_url}; rule: "
                               "rotation.providers.safe_state.decide")
        return result

    # --- Background -----------------------------------------------------------------------------------------------
    @journaled
    def running_with_current(self, label: str, evidence: Evidence, notify: Callable[[str], None] | None = None) -> None:
        """The app is healthy and runs on the credential .env holds; during a rotation in progress (a rerun after a
        crash), on its CURRENT or PENDING credential. An app an earlier run stopped and did not start again (killed
        during the restart) is started first, saying so (`notify` and the evidence)."""
        require(label == self.label, f"the scenario names the {label}, but its tag selects the {self.label}")
        kept = prerequisites.start_if_left_stopped(self.deployment, evidence, notify)
        require(kept is None, f"the app was stopped by {kept.line() if kept else ''}, whose rotation is in progress "
                              "and needs it stopped: finish that rotation first")
        current = self._in_env()
        evidence.register_secret(current)
        progress = self._state()
        allowed = {current.fingerprint}
        if progress is not None and progress.in_progress:
            allowed |= {fp for fp in (progress.current_fp, progress.pending_fp) if fp}
        health = app_control.wait_for_health(self.deployment.app.health_url,
                                             timeout_s=self.deployment.app.health_timeout_s)
        in_app = app_credential(health, self.provider.name)
        evidence.record(f"current {label}", {"in .env": current.fingerprint, "length": len(current),
                                             "app reports": in_app or "no credential (not reported)",
                                             "health": health.status_code,
                                             "rotation in progress": progress.rotation_id if progress and
                                             progress.in_progress else None},
                        source=f"{self.env_file.name}: {self.credential.env}; GET {self.deployment.app.health_url}")
        require(health.healthy, f"the application is {health.unhealthy_at(self.deployment.app.health_url)}")
        require(in_app is None or in_app in allowed,
                f"the application runs on {in_app}, not on the {label} {current.fingerprint} in {self.env_file.name}")
        self._check_inputs(evidence)

    # --- create ---------------------------------------------------------------------------------------------------
    @journaled
    def create(self, evidence: Evidence) -> None:
        """A new credential from the provider, or, for a rotation in progress, the one it created."""
        progress = self._state()
        if progress is not None and progress.in_progress and not self.abandon_pending:
            self._resume(progress, evidence)
            return
        if progress is not None and progress.in_progress:
            self._abandon(progress, evidence)
        old = self._in_env()
        found = self._from_backups(old.fingerprint)
        require(found is not None, f"no backup of {self.env_file.name} holds the current {self.label} "
                                   f"{old.fingerprint}: back up the configuration first")
        new = self._issue(old, evidence)
        evidence.register_secret(new)
        self._refuse_weak(old, new)
        self._begin(old, new, found[0] if found else None)
        evidence.record(f"new {self.label} created", self._tag({
            "new": new.fingerprint, "length": len(new), "replaces": old.fingerprint,
            "strength policy": "passed", "state": "PENDING (step create)",
            "kept until .env holds it in": self._kept_where()}),
            source=self.provider.source("issue"))

    def _begin(self, old: Secret, new: Secret, backup: Path | None) -> None:
        """The state names the new credential as PENDING. One the provider issued is written to the pending file
        first (mode 0600; never unfindable: it exists nowhere else); one the operator supplied is not kept on disk at
        all: a rerun takes it from the operator again."""
        if not self._operator_supplied:
            state.write_pending(self.env_file, self.credential.type, new)
        begun = state.begin(self.env_file, self.credential.type, current_fp=old.fingerprint,
                            pending_fp=new.fingerprint, reason=self.reason, backup=backup, abandon=True)
        self._old, self._new, self._rotation_id = old, new, begun.rotation_id

    def _kept_where(self) -> str:
        if self._operator_supplied:
            return "this run's memory only (a rerun asks the operator for it again)"
        pending = state.pending_path(self.env_file, self.credential.type)
        return f"{pending.name} (mode {oct(envfile.file_mode(pending))})"

    def _issue(self, old: Secret, evidence: Evidence) -> Secret:
        """The provider's new credential. One the provider already held, which this rotation's state did not create
        (Twilio's secondary token from someone else's rotation), is refused, nothing changed; with
        replace_secondary it is discarded first, and the evidence says so."""
        try:
            return self.provider.issue(old)
        except ExistingCredential as exc:
            existing, found = exc.existing, exc.found
            if existing is not None:
                evidence.register_secret(existing)
            if not self.replace_secondary or existing is None:
                raise CheckFailed(
                    f"{exc}. Nothing was changed. If another rotation is using it, finish or discard that one first; "
                    "if it is left over from an interrupted run whose state is gone, rerun with --replace-secondary "
                    "to delete it and create a new one") from None
        self.provider.discard_pending(old, existing)
        evidence.record(f"existing pending {self.label} discarded at the provider", {
            "found": found, "credential": existing.fingerprint, "created by": "not this rotation",
            "discarded because": "the operator chose to replace it (--replace-secondary)"},
            source=self.provider.source("discard"))
        return self.provider.issue(old)

    def _values_in_use(self, old: Secret) -> list[Secret]:
        """Every other credential in .env, and every earlier value of this one in the backups."""
        env = envfile.read_env(self.env_file)
        others = [Secret(env[c.env]) for c in self.deployment.config.credentials
                  if c.type != self.credential.type and env.get(c.env)]
        earlier = [Secret(v) for b in envfile.backups(self.env_file)
                   if (v := envfile.read_env(b).get(self.credential.env))]
        return others + [e for e in earlier if e != old]

    def _refuse_weak(self, old: Secret, new: Secret) -> None:
        """The registry's strength policy, an unchanged or reused value: refused before anything is kept, and the
        refused credential is discarded at the provider."""
        try:
            check_strength(new, self.credential.strength, name=f"the new {self.label}", current=old,
                           others=self._values_in_use(old))
        except WeakSecretError as exc:
            self.provider.discard_pending(old, new)
            raise CheckFailed(str(exc)) from None

    def _resume(self, progress: state.RotationState, evidence: Evidence) -> None:
        in_env = self._in_env()
        if in_env.fingerprint != progress.pending_fp and self._operator_supplied:
            self._take_operators_input(progress, in_env, evidence)
            return
        pending_file = state.pending_path(self.env_file, self.credential.type)
        new = in_env if in_env.fingerprint == progress.pending_fp else state.read_pending(self.env_file,
                                                                                          self.credential.type)
        if new is None or new.fingerprint != progress.pending_fp:
            raise CheckFailed(f"rotation {progress.rotation_id}: its PENDING {self.label} {progress.pending_fp} is "
                              f"neither in {self.env_file.name} nor in {pending_file.name}, so nothing can finish it; "
                              "check which credential the provider holds, then abandon it (--abandon-pending)")
        found = (None, in_env) if in_env.fingerprint == progress.current_fp else self._from_backups(progress.current_fp)
        if found is None:
            raise CheckFailed(f"rotation {progress.rotation_id}: no backup of {self.env_file.name} holds the previous "
                              f"{self.label} {progress.current_fp}: restore it before resuming")
        evidence.register_secret(new)
        evidence.register_secret(found[1])
        self._old, self._new, self._rotation_id = found[1], new, progress.rotation_id
        evidence.record(f"resuming the {self.label} rotation", self._tag({
            "last step done": progress.step, "started": progress.started_at, "new": new.fingerprint,
            "replaces": found[1].fingerprint}),
            source=f"{state.state_path(self.env_file).name}; the new credential from "
                   f"{self.env_file.name if new is in_env else pending_file.name}, the old one from "
                   f"{found[0].name if found[0] else self.env_file.name}")

    def _take_operators_input(self, progress: state.RotationState, old: Secret, evidence: Evidence) -> None:
        """A rerun of a rotation whose operator-supplied credential never reached .env: the operator's credential
        for this run (handed over, or asked for). The same one resumes the rotation; a different one replaces the
        pending one (a typo the provider refused, say), and the evidence records the replacement."""
        require(old.fingerprint == progress.current_fp,
                f"rotation {progress.rotation_id}: {self.env_file.name} holds {old.fingerprint}, neither its previous "
                f"{self.label} {progress.current_fp} nor its pending one {progress.pending_fp}: check .env")
        kept = state.read_pending(self.env_file, self.credential.type)  # left by an older version of this tool
        assert isinstance(self.provider, OperatorInput)
        new = self.provider.offered() or kept or self.provider.issue(old)
        evidence.register_secret(new)
        state.discard_pending(self.env_file, self.credential.type)  # no plaintext beyond the run that needs it
        found = self._from_backups(progress.current_fp)
        if new.fingerprint == progress.pending_fp:
            self._old, self._new, self._rotation_id = old, new, progress.rotation_id
            evidence.record(f"resuming the {self.label} rotation", self._tag({
                "last step done": progress.step, "started": progress.started_at, "new": new.fingerprint,
                "replaces": old.fingerprint}), source=f"{state.state_path(self.env_file).name}; the new credential "
                                                      f"from the operator, again")
            return
        self._refuse_weak(old, new)
        self._begin(old, new, found[0] if found else None)
        evidence.record(f"pending {self.label} replaced by the operator's", self._tag({
            "replaced": progress.pending_fp, "of rotation": progress.rotation_id,
            "last step done with it": progress.step, "new": new.fingerprint, "replaces": old.fingerprint,
            "why": "the operator gave this run a different one (the earlier one never reached .env)",
            "kept until .env holds it in": self._kept_where()}),
            source=self.provider.source("issue"))

    def _abandon(self, progress: state.RotationState, evidence: Evidence) -> None:
        """Start over a rotation whose new credential never reached .env; the provider discards that credential."""
        current = self._in_env()
        require(current.fingerprint != progress.pending_fp,
                f"the PENDING {self.label} {progress.pending_fp} of rotation {progress.rotation_id} is already in "
                f"{self.env_file.name}: finish that rotation (rerun without --abandon-pending) instead")
        pending = state.read_pending(self.env_file, self.credential.type)
        at_provider: object = (f"nothing was done at the provider: this tool does not hold the pending {self.label}; "
                               "if it was created at the provider, revoke it there")
        if pending is not None:
            evidence.register_secret(pending)
            act = self.provider.discard_pending(current, pending)
            done = act if isinstance(act, RevocationAct) else by_this_run(self.provider.source("discard"))
            at_provider = confirm_refused(lambda: self._ask(pending), done, Wait(0.0, 0.0)).as_evidence()
        state.discard_pending(self.env_file, self.credential.type)
        evidence.record(f"pending {self.label} rotation abandoned", {
            "rotation": progress.rotation_id, "pending": progress.pending_fp, "last step done": progress.step,
            "at the provider": at_provider}, source=self.provider.source("discard"))

    # --- test before full deployment, set -------------------------------------------------------------------------
    @journaled
    def test_before_deployment(self, evidence: Evidence) -> None:
        result = self._ask(self.new)
        evidence.record(f"new {self.label} tested before full deployment", self._tag(result.as_evidence()),
                        source=self.provider.source("check"))
        reply = f"{result.status} {result.code or ''} {result.detail}".replace("  ", " ").rstrip()
        require(result.answer is not CredentialCheck.UNDECIDED,
                f"no definitive answer about the new {self.label} {self.new.fingerprint} ({reply}); nothing was "
                "changed: run the same command again to ask again")
        again = ("give the rerun the correct one (create it again at the provider if need be); it replaces this one"
                 if self._operator_supplied else "rerun with --abandon-pending to discard it and create another")
        require(result.answer is CredentialCheck.ACCEPTED,
                f"the new {self.label} {self.new.fingerprint} is refused by the provider ({reply}); nothing was "
                f"changed in {self.env_file.name}: {again}")

    def update_configuration(self, evidence: Evidence) -> None:
        written = self._in_env() != self.new
        if written:
            envfile.set_value(self.env_file, self.credential.env, self.new)
        advanced = state.advance(self.env_file, self.credential.type, "set")
        evidence.record(".env updated", self._tag({self.credential.env: self.new.fingerprint,
                                                   "written by": "this run" if written else "an earlier run",
                                                   "state": f"step {advanced.step}"}),
                        source=f"{self.env_file.name}: {self.credential.env} rewritten (temp file, fsync, rename, mode "
                               "0600; read back with python-dotenv before the step ends)")

    def check_configuration(self, evidence: Evidence) -> None:
        """.env holds the new credential, keeps mode 0600 and every other setting of the backup taken before."""
        backup = self._started_from()
        before, after = envfile.read_env(backup), envfile.read_env(self.env_file)
        mode = envfile.file_mode(self.env_file)
        changed = sorted(k for k in before.keys() | after.keys()
                         if k != self.credential.env and before.get(k) != after.get(k))
        in_env = Secret(after.get(self.credential.env, ""))
        evidence.record(".env after the update", self._tag({"mode": oct(mode), "other settings changed": changed,
                                                            self.credential.env: in_env.fingerprint}),
                        source=f"stat {self.env_file.name}; python-dotenv parse, compared with {backup.name}")
        require(mode == 0o600, f"{self.env_file.name} has mode {oct(mode)}, not 0600")
        require(not changed, f"the update changed other settings: {', '.join(changed)}")
        require(in_env == self.new, f"{self.credential.env} in {self.env_file.name} is {in_env.fingerprint}, not "
                                    f"the new {self.label} {self.new.fingerprint}")

    def _started_from(self) -> Path:
        """The backup taken before this rotation changed anything (recorded in the state when it began)."""
        progress = self._state()
        backup = Path(progress.backup) if progress is not None and progress.backup else None
        if backup is None or not backup.exists():
            raise CheckFailed(f"the backup rotation {self._rotation_id} was started from is gone "
                              f"({backup.name if backup else 'none recorded'})")
        return backup

    # --- deploy and verify ----------------------------------------------------------------------------------------
    @journaled
    def check_app_uses_new(self, evidence: Evidence) -> None:
        """The app runs on the new credential: healthy, its own check of the provider passing, and its process started
        after .env changed (the app reads .env only at start; its /health names no credential)."""
        health = app_control.wait_for_health(self.deployment.app.health_url,
                                             timeout_s=self.deployment.app.health_timeout_s)
        check = app_check(health, self.provider.name)
        proof = app_proof.started_after(self.deployment.app, self.env_file)
        evidence.record(f"{self.label} loaded by the application", self._tag({
            "health": health.status_code, "app's own check": check or None, "new": self.new.fingerprint,
            **proof.detail}),
            source=f"GET {self.deployment.app.health_url}; {proof.method} "
                   f"({app_control.start_source(self.deployment.app)}) against the modification "
                   f"time of {self.env_file.name}")
        require(health.healthy, f"the application is not healthy with the new {self.label}: HTTP "
                                f"{health.status_code}")
        require(proof.proven, proof.why)
        require(check.get("ok") is not False, f"the application's {self.provider.name} check fails with the new "
                                              f"{self.label}: {check.get('error') or check.get('detail')}")

    @journaled
    def send_test_message(self, evidence: Evidence) -> None:
        """One test message. When the provider's answer is lost after it may have acted, the message is looked up
        (by its Message-ID / nonce) with the witness before anything is sent again; without a witness who can look
        (SMTP live: no relay lists its messages) the step stops rather than risk a second message."""
        text = TEST_MESSAGE.format(label=self.label)
        try:
            self._delivery = self.provider.send_test_message(self.new, text)
        except SendAnswerLost as lost:
            self._delivery = self._after_lost_answer(lost, evidence)
            if self._delivery is None:
                self._delivery = self.provider.send_test_message(self.new, text)
        evidence.record("test message accepted by the provider", self._tag(self._delivery.as_evidence()),
                        source=self.provider.source("send"))

    def _after_lost_answer(self, lost: SendAnswerLost, evidence: Evidence) -> Delivery | None:
        """The lost message if a witness finds it arrived; None when the witness proves it did not (send again)."""
        sent = Delivery(self.provider.name, lost.message_id, lost.recipient, f"no answer ({lost.status})", 0.0)
        found = self.witness.report(sent) if self.witness is not None else None
        evidence.record("test message's answer lost", self._tag({
            "message": lost.message_id, "recipient": lost.recipient, "what happened": str(lost),
            "looked up": found.as_evidence() if found else "nobody can look it up (no witness)",
            "next": ("not sent again: it arrived" if found and found.verdict == "delivered" else
                     "sent again: it did not arrive" if found else "stopped: it may have been sent")}),
            source=f"{self.provider.source('send')}; {self.witness.source if self.witness else 'no witness'}")
        if found is None:
            raise CheckFailed(f"the answer to the test message {lost.message_id} was lost after the provider may have "
                              f"queued it; nothing was sent again. Look for that Message-ID in {lost.recipient}'s "
                              "mailbox, then run the same command again (it sends a new one)")
        if found.verdict == "delivered":
            self._found_after_loss = found
            return sent
        return None

    @journaled
    def check_test_message(self, evidence: Evidence, *, delivered: bool = False) -> None:
        """The provider's word on the test message (Twilio: polled to a final status; Meta: its acceptance; the
        relay: its reply), and a witness's where there is one (the app's delivery records, a staging mailbox).
        Fails when either says it failed, or when the step claims delivery (`delivered`) and nobody proved it;
        reads `delivered` only when one of them proves it."""
        delivery = self._delivery
        if delivery is None:
            raise CheckFailed("no test message was sent in this run")
        report = self._found_after_loss or self.provider.delivery_report(self.new, delivery)
        witnessed = self.witness.report(delivery) if self.witness is not None and report.verdict != "failed" else None
        proven = [r for r in (report, witnessed) if r is not None and r.verdict == "delivered"]
        reading = (f"delivered ({proven[0].detail})" if self.deployment.live else
                   f"rehearsal: delivered to the stand-in ({proven[0].detail})") if proven else report.reading
        evidence.record("test message", self._tag({
            **report.as_evidence(), "verdict": reading,
            "witness": witnessed.as_evidence() if witnessed is not None else "none configured"}),
            source=report.source + (f"; {self.witness.source}" if self.witness is not None else ""))
        require(report.verdict != "failed", f"the test message {delivery.message_id} was not delivered: "
                                            f"{report.detail}")
        self._require_witnessed(delivery, witnessed)
        require(bool(proven) or not delivered, f"the test message {delivery.message_id} is not proven delivered: "
                                         f"{report.reading}")
        self._tested = True

    @staticmethod
    def _require_witnessed(delivery: Delivery, witnessed: DeliveryReport | None) -> None:
        require(witnessed is None or witnessed.verdict != "failed",
                f"the test message {delivery.message_id} was not delivered: {witnessed.detail if witnessed else ''}")

    # --- retire the old credential --------------------------------------------------------------------------------
    @journaled
    def retire_old(self, evidence: Evidence) -> None:
        """Promote / revoke, unless the old credential is already refused (an earlier run of this rotation did it).
        Only once the new credential has been tested in this run (the app ran on it and its test message passed):
        the old one must never die before the app runs on the new one. The state then says `test`."""
        require(self._tested, f"the new {self.label} of rotation {self._rotation_id} has not passed its test message "
                              "in this run: the old one stays valid")
        state.advance(self.env_file, self.credential.type, "test")
        revocation = self._revoke(self.old)
        evidence.record(f"old {self.label} retired", self._tag({
            "retired": self.old.fingerprint if revocation.proven else None, "old": self.old.fingerprint,
            "now current": self.new.fingerprint, **revocation.as_evidence()}),
            source=f"{self.provider.source('retire')}; then {self.provider.source('check')}")
        require(revocation.proven, f"the old {self.label} {self.old.fingerprint}: {revocation.sentence()}. Revoke it "
                                   "at the provider, then run the same command again (it resumes here)")

    def _revoke(self, old: Secret) -> Revocation:
        """Revoke `old` (or have it revoked by whoever can) and ask the provider until it refuses it, up to the
        revoke wait. Already refused: nobody is asked, and the record says it was found so. No definitive answer:
        nothing is revoked by this run and the record says so."""
        before = self._ask(old)
        if before.answer is not CredentialCheck.ACCEPTED:
            found = RevocationAct("nobody in this run", "the provider was asked before revoking anything", now())
            if before.answer is CredentialCheck.REFUSED:
                found = RevocationAct("someone before this run (an earlier run or the operator)",
                                      "found refused when this run asked", now())
            return Revocation(found, before, now(), 1, 0.0)
        act = self.provider.retire_old(old, self.new)
        done = act if isinstance(act, RevocationAct) else by_this_run(self.provider.source("retire"))
        return confirm_refused(lambda: self._ask(old), done, self.revoke_wait)

    @journaled
    def check_old_rejected(self, evidence: Evidence) -> None:
        result = self._ask(self.old)
        evidence.record(f"old {self.label} after retirement", self._tag(result.as_evidence()),
                        source=self.provider.source("check"))
        require(result.answer is not CredentialCheck.ACCEPTED, f"the old {self.label} {self.old.fingerprint} is "
                                                               f"still accepted by the provider: {result.detail}")
        require(result.answer is CredentialCheck.REFUSED,
                f"no definitive answer about the old {self.label} {self.old.fingerprint} ({result.status}: "
                f"{result.detail}); it is not counted as rejected: run the same command again to ask again")
        self._old_refused = True

    @journaled
    def check_new_still_works(self, evidence: Evidence) -> None:
        result = self._ask(self.new)
        health = app_control.wait_for_health(self.deployment.app.health_url,
                                             timeout_s=self.deployment.app.health_timeout_s)
        in_app = app_credential(health, self.provider.name)
        evidence.record(f"new {self.label} after retirement", self._tag({
            **result.as_evidence(), "app health": health.status_code, "app reports": in_app}),
            source=f"{self.provider.source('check')}; GET {self.deployment.app.health_url}")
        require(result.answer is not CredentialCheck.UNDECIDED,
                f"no definitive answer about the new {self.label} ({result.status}: {result.detail}): run the same "
                "command again to ask again")
        require(result.answer is CredentialCheck.ACCEPTED,
                f"the new {self.label} stopped working: {result.status} {result.code or ''}")
        require(health.healthy, f"the application is not healthy after the old {self.label} was retired: HTTP "
                                f"{health.status_code}")

    # --- finish ---------------------------------------------------------------------------------------------------
    def log(self, evidence: Evidence) -> None:
        """The rotation log row, once (matched on the old credential's hash); PENDING becomes CURRENT."""
        progress = self._state()
        require(self._old_refused, f"the old {self.label} of rotation {self._rotation_id} has not been seen refused "
                                   "by the provider in this run: nothing is logged as complete")
        require(progress is not None and progress.step in ("test", "finish"),
                f"rotation {self._rotation_id} of the {self.label} is not ready to log: last step done "
                f"{progress.step if progress else 'none'}")
        with connect(self.deployment.dsn) as conn:
            found = find_rotation(conn, self.credential, self.old)
            record = found or log_rotation(conn, self.credential, rotated_by=self.deployment.operator,
                                           previous=self.old, reason=self.reason)
        state.advance(self.env_file, self.credential.type, "finish")
        state.discard_pending(self.env_file, self.credential.type)
        evidence.record("rotation logged", self._tag({**record.as_evidence(),
                                                      "written by": "an earlier run" if found else "this run"}),
                        source=LOG_SOURCE)

    def check_logged(self, days: int, evidence: Evidence) -> None:
        with connect(self.deployment.dsn) as conn:
            found = find_rotation(conn, self.credential, self.old)
        evidence.record("rotation log row read back", self._tag({"row": found.as_evidence() if found else None}),
                        source=LOG_READ_SOURCE)
        row = self._logged_row(found)
        require(row.rotation_reason == self.reason, f"the row's reason is {row.rotation_reason!r}, not "
                                                    f"{self.reason!r}")
        require(self.credential.interval.days == days, f"the registry rotates {self.credential.type} every "
                                                       f"{self.credential.interval.days} days, not {days}")
        due = (row.next_rotation_due - row.rotated_at) if row.next_rotation_due else None
        require(due == self.credential.interval, f"the next rotation is due {due} after this one, not "
                                                 f"{self.credential.interval}")

    def _logged_row(self, found: RotationRecord | None) -> RotationRecord:
        if found is None:
            raise CheckFailed(f"security_credential_rotations holds no {self.credential.type} row whose "
                              f"previous_key_hash is the old {self.label}'s ({self.old.fingerprint})")
        return found
