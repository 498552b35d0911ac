"""Runbook section 1, Database Encryption Key Rotation, as idempotent steps over the four-step state.

    (first)  prepare              everything checkable checked before any change (rotation.db_key.readiness), the
                                  run lock taken (rotation.core.lock), the suite's schema created or upgraded
                                  (rotation.core.runbook_schema), the lock's holder recorded
    create   generate_key         a new key from the CSPRNG, judged by the registry's strength policy, kept as the
                                  PENDING credential (.rotation-pending.db_encryption_key, 0600) until .env holds it
    set      write_env            .env holds the new key: refused while the app answers healthy or any session of its
                                  database role is connected
             reencrypt            every value of the inventory re-encrypted, pgcrypto columns in SQL, the app's Fernet
                                  values with MultiFernet.rotate; no trigger fires; a killed job resumes, and values
                                  written during the run are taken up by the next run
    test     verify_new_key       every value of every inventory table decrypts with the new key to its plaintext
                                  before the rotation, none with the old, and nothing but ciphertext changed
             verify_old_key_dead  the completeness sweep: no value of any bytea or text column of any table of the app's
                                  schemas opens with the old key
    finish   log, check_app_key   the rotation log row (once), and the app proven on the new key (probe, or its
                                  process started after .env changed): PENDING -> CURRENT; the per-value digests
                                  are then deleted (the job summary stays)

Each step may run again after a kill at any point: it reads the state and either finishes its work or records that it
was done. A resumed run finds its keys where nothing else keeps them: the new key in the PENDING file or .env, the old
key in the .env backup whose fingerprint the state names. Every record carries the rotation id (`rotation`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg

from rotation.core import app_control, app_proof, envfile, prerequisites, progress, runbook_schema, signals, state
from rotation.core.database import connect
from rotation.core.deployment import Deployment
from rotation.core.keys import WeakSecretError, check_strength, generate_key
from rotation.core.lock import SOURCE as LOCK_SOURCE
from rotation.core.lock import TAKE_OVER_OPTION, RunLock
from rotation.core.preflight import RunContext
from rotation.core.proof import CheckFailed, Evidence, record_exception, require
from rotation.core.rotation_log import RotationRecord, find_rotation, log_rotation
from rotation.core.safe_state import SafeState, env_holds, untold
from rotation.core.secret import Secret
from rotation.db_key import fernet, populations, readiness, safe_state, staged, stopped, sweep, unopened
from rotation.db_key.reencrypt import (
    DEFAULT_CIPHER_OPTIONS,
    SAMPLE_SIZE,
    JobResult,
    JobSummary,
    ReencryptionError,
    TableSpec,
    abandon_job,
    current_schema,
    find_job,
    jobs_towards,
    pgcrypto_specs,
    start_or_resume_job,
)
from rotation.db_key.reencrypt import reencrypt as reencrypt_table
from rotation.db_key.verify import (
    CleanedJob,
    PopulationCheck,
    cleaned_job,
    forget_digests,
    key_reach,
    sample_opens,
    snapshot_size,
    verify,
)

CREDENTIAL = "db_encryption_key"
SETTLE_DB_WAIT_S = 60.0  # how long the end of a run waits for a restarting database before saying it cannot tell
T = TypeVar("T")

KEYS = ("keys: loaded into the session temp table pg_temp.rotation_key with COPY FROM STDIN and read as "
        "(SELECT pg_temp.rotation_key('old'|'new')); never a statement parameter")
REENCRYPT_SQL = ("one statement per keyset page of 2,000 rows per primary-key range ({pk}): WITH page AS (SELECT {pk}, "
                 "sha256(ROW(<other columns>)::text), pgp_sym_decrypt(<column>, <old>) for each of "
                 "{columns} FROM {table} ... FOR UPDATE), UPDATE {table} SET <column> = pgp_sym_encrypt(<plaintext>, "
                 "<new>, '{options}') FROM page, INSERT INTO rotation_runbook.row_digest one row per table row: its "
                 "other columns' digest and hmac(<plaintext>, <new>, 'sha256') per value: each old value decrypted "
                 "once, its digest and new ciphertext committed together with the range's checkpoint in "
                 "rotation_runbook.reencrypt_range, triggers kept quiet "
                 "(SET LOCAL session_replication_role = replica, or ALTER TABLE ... DISABLE TRIGGER and back, in the "
                 "same transaction); then rows the pass wrote no digest for (and, when the job is taken up again, "
                 "every row with a value under the old key) digested and re-encrypted; " + KEYS)
FERNET_SQL = ("SELECT {pk}, <column> FROM {table} in keyset pages of 200; each value not yet under the new key: "
              "MultiFernet([Fernet(new), Fernet(old)]).rotate(token) with the app's derivation "
              "urlsafe_b64encode(sha256(key)); UPDATE {table} SET <column> = <token> WHERE {pk} = <id>, one "
              "transaction per page with its checkpoint, triggers kept quiet as above")
VERIFY_SQL = ("rotation_runbook.row_digest joined to {table} on {pk}, per column: "
              "hmac(rotation_runbook.try_decrypt(<column>, <new>), <new>, 'sha256') = the digest taken before; "
              "rotation_runbook.try_decrypt(<column>, <old>) IS NULL for any value not so verified (one that is "
              "cannot open under another key; the sweep tries the old key on every value); NULLs kept; every row of "
              "the table known to "
              "the snapshot; sha256(ROW(<other columns>)::text) = the row's digest before; " + KEYS)
FERNET_VERIFY = ("every row of {table}: Fernet(new).decrypt(<column>) digested with HMAC-SHA-256 under the new key = "
                 "the digest taken before; Fernet(old) opens none; every row known to the snapshot, its other "
                 "columns' digest unchanged")
RECHECK_SQL = ("SELECT count(<column>), count(rotation_runbook.try_decrypt(<column>, <new>)) FROM {table}, per column "
               "(the per-value digests were deleted after this rotation was verified); " + KEYS)
LOG_SQL = ("INSERT INTO security_credential_rotations (credential_type, rotated_by, previous_key_hash, "
           "rotation_reason, rotated_at, next_rotation_due) VALUES ($type, $operator, sha256(old key), $reason, now(), "
           "now() + interval), unless a row with this credential_type and previous_key_hash exists")
FIND_SQL = ("SELECT ... FROM security_credential_rotations WHERE credential_type = $type AND previous_key_hash = "
            "sha256(old key) ORDER BY rotated_at DESC LIMIT 1")


@dataclass(frozen=True)
class RotationKeys:
    old: Secret
    new: Secret
    rotation_id: str


def need(value: T | None, message: str) -> T:
    """The value, or CheckFailed(message) when there is none."""
    if value is None:
        raise CheckFailed(message)
    return value


class DbKeyRotation:
    """Runbook section 1 as idempotent steps over the four-step state of db_encryption_key.

    `scheduled`: a scheduled rotation is not repeated within the key's interval. When the last rotation finished and
    the key is not yet due (its warning window has not begun), generate_key takes up that rotation again rather than
    start another, so re-running the operator's command after a kill at its very end re-checks the finished rotation.
    """

    def __init__(self, deployment: Deployment, *, reason: str, workers: int | None = None,
                 abandon_pending: bool = False, scheduled: bool = False, staged: bool = False,
                 max_rate: float | None = None, run: RunContext | None = None,
                 leave_unreadable: bool = False, notify: Callable[[str], None] | None = None) -> None:
        self.deployment = deployment
        # where the evidence goes, what signs it, and the run lock; a library caller without one takes no lock
        self.run = run or RunContext()
        self.credential = deployment.config.credential(CREDENTIAL)
        self.reason = reason
        self.workers = workers or os.cpu_count() or 2
        self.abandon_pending = abandon_pending
        self.scheduled = scheduled
        self.specs: tuple[TableSpec, ...] = pgcrypto_specs(deployment.config)
        self.fernet_specs: tuple[TableSpec, ...] = fernet.fernet_specs(deployment.config)
        self._keys: RotationKeys | None = None
        self.staged = staged  # stage the new ciphertexts while the app runs; the app is stopped only for the cutover
        self.max_rate = max_rate
        self._stopped_at: float | None = None  # when this run stopped the app (the downtime window's start)
        self._window_from = "app proven stopped"
        # values no key opens: refused before the app stops (scheduled), or left byte for byte as found (emergency)
        self.leave_unreadable = leave_unreadable
        self.notify = notify or _to_stderr  # a line for the operator now (the plugin shows it past the capture)
        self.warnings: list[str] = []       # said again at the end of the run, beside its one-line safe state

    # --- what the rotation works on ---------------------------------------------------------------------------------
    @property
    def sweep_workers(self) -> int:
        """Connections for the completeness sweep. It runs once the app is back, beside the app's own queries, so it
        leaves them a core of the server."""
        return max(1, self.workers - 1)

    @property
    def env_file(self) -> Path:
        return self.deployment.env_file

    @property
    def old_key(self) -> Secret:
        return self._current_keys().old

    @property
    def new_key(self) -> Secret:
        return self._current_keys().new

    @property
    def rotation_id(self) -> str:
        return self._current_keys().rotation_id

    # --- Background -------------------------------------------------------------------------------------------------
    def prepare(self, evidence: Evidence) -> None:
        """Given (first): everything checkable is checked before the first change (rotation.db_key.readiness), and
        refused naming each finding and its fix; then the run lock is taken (one rotation at a time), the suite's
        schema created or upgraded (the first run on a database holding only the app's migrations), and the lock's
        record written. Each part recorded. Nothing of the app's, its data's or .env's has changed yet."""
        found, schema = readiness.preflight(self.deployment, self.run, self.specs, self.fernet_specs)
        evidence.record("checked before any change", found.as_evidence(), source=readiness.SOURCE)
        found.require()
        assert schema is not None  # the database answered: else a finding refused the run above
        lock = self.run.lock
        if lock is not None:
            lock.take()
        with connect(self.deployment.dsn) as conn:
            done = runbook_schema.ensure(conn, schema)
        evidence.record(f"the suite's schema {runbook_schema.SCHEMA}", {
            "found": schema.state, "done": done, "role": schema.role, "database": schema.database},
            source=runbook_schema.SOURCE)
        self._claim(lock, evidence)

    def _claim(self, lock: RunLock | None, evidence: Evidence) -> None:
        if lock is None:
            evidence.record("run lock", {"taken": False, "why": "a library caller without a run lock (the "
                                                                "operator's command and rehearsals always take it)"},
                            source=LOCK_SOURCE)
            return
        claimed = lock.claim()
        evidence.record("run lock", {
            "taken": True, "holder": claimed.holder.as_evidence(),
            "taken over from a stale lock": claimed.taken_over.as_evidence() if claimed.taken_over else None,
            "how": (f"{TAKE_OVER_OPTION}: the record of a run whose lock session is gone was replaced"
                    if claimed.taken_over else "no other holder")}, source=LOCK_SOURCE)

    def check_current_key(self, evidence: Evidence) -> None:
        """Given: the inventory's encrypted values open with the key in .env (one value per column is tried). A rerun
        of a rotation in progress says so instead: its data is partly under the new key by design."""
        current = envfile.get_secret(self.env_file, self.credential.env)
        evidence.register_secret(current)
        in_progress = state.load(self.env_file, self.credential.type)
        if in_progress is not None and in_progress.in_progress:
            evidence.record("resuming a rotation in progress", {
                "rotation": in_progress.rotation_id, "last step done": in_progress.step,
                "old key": in_progress.current_fp, "new key": in_progress.pending_fp},
                source=f"{state.state_path(self.env_file).name}: the data was checked by the run that started it")
            return
        self._require_app_proof()
        found: dict[str, tuple[int, bool | None]] = {}
        with connect(self.deployment.dsn) as conn:
            for spec in self.specs:
                found |= {f"{spec.table}.{c}": v for c, v in sample_opens(conn, spec, current).items()}
            for spec in self.fernet_specs:
                found |= {f"{spec.table}.{c}": v for c, v in fernet.sample_opens(conn, spec, current).items()}
        evidence.record("encrypted data under the current key", {
            "key": current.fingerprint, "length": len(current),
            "columns": {name: {"values": n, f"one of the first {SAMPLE_SIZE} values opens": opens}
                        for name, (n, opens) in found.items()},
            "proof the app will run on the new key": app_proof.proof_method(self.deployment.app)},
            source=f"{self.env_file.name}: {self.credential.env}; per inventory column: count(<column>) and the "
                   f"first {SAMPLE_SIZE} non-NULL values tried with the key (pgcrypto: rotation_runbook.try_decrypt; "
                   f"Fernet: the app's derivation); {KEYS}")
        unreadable = [name for name, (_, opens) in found.items() if opens is False]
        require(not unreadable, f"the current key {current.fingerprint} in {self.env_file.name} does not open "
                                f"{', '.join(unreadable)}: the data is not under the key the app is configured with")

    # --- create ---------------------------------------------------------------------------------------------------
    def generate_key(self, evidence: Evidence) -> None:
        """create: a new key, kept as PENDING; or, on a rerun, the rotation that is already under way."""
        if self.run.lock is not None:
            self.run.lock.require_held()  # one rotation at a time: still ours before the first change
        existing = state.load(self.env_file, self.credential.type)
        if existing is not None and existing.in_progress and not self.abandon_pending:
            keys = self._recover(existing)
            self._record_keys(evidence, "resumed: the new key of the rotation in progress", keys,
                              {"last step done": existing.step, "started": existing.started_at})
        elif existing is not None and not existing.in_progress and self.scheduled and not self._due(existing):
            keys = self._recover(existing)
            due = self._next_due(existing)
            self._record_keys(evidence, "the last rotation is finished and the key is not due: no new key", keys, {
                "finished": existing.updated_at, "next due": due.isoformat(timespec="seconds"),
                "this run": "re-checks that rotation step by step"})
        else:
            if existing is not None and existing.in_progress:
                self._abandon(existing, evidence)
            keys = self._begin()
            self._record_keys(evidence, "new key generated", keys, {
                "generator": "secrets.token_urlsafe(32) (the OS CSPRNG)", "state": "PENDING (step create)",
                "kept until .env holds it in": state.pending_path(self.env_file, self.credential.type).name})
        self._keys = keys

    def _begin(self) -> RotationKeys:
        old = envfile.get_secret(self.env_file, self.credential.env)
        backup = self._backup_holding(old)
        require(backup is not None, f"no backup of {self.env_file.name} holds the current key {old.fingerprint}: "
                                    "back up the configuration before a new key is generated")
        new = generate_key()
        try:
            check_strength(new, self.credential.strength, name=f"the new {self.credential.label}", current=old,
                           others=self._other_credentials())
        except WeakSecretError as exc:
            raise CheckFailed(str(exc)) from None
        state.write_pending(self.env_file, self.credential.type, new)  # first: a kill now leaves no state to resume
        begun = state.begin(self.env_file, self.credential.type, current_fp=old.fingerprint,
                            pending_fp=new.fingerprint, reason=self.reason, backup=backup,
                            abandon=self.abandon_pending)
        return RotationKeys(old, new, begun.rotation_id)

    def _abandon(self, existing: state.RotationState, evidence: Evidence) -> None:
        """--abandon-pending: only while the pending key has reached neither .env nor any value."""
        in_env = envfile.get_secret(self.env_file, self.credential.env)
        require(in_env.fingerprint != existing.pending_fp,
                f"--abandon-pending refused: {self.env_file.name} already holds the pending key "
                f"{existing.pending_fp} of rotation {existing.rotation_id}; resume the rotation instead")
        with connect(self.deployment.dsn) as conn:
            jobs = jobs_towards(conn, existing.pending_fp or "")
            written = [j for j in jobs if j.rows_done or j.status == "done"]
            require(not written, "--abandon-pending refused: values are already under the pending key "
                                 f"{existing.pending_fp} (" + "; ".join(f"{j.table}: {j.rows_done:,} of "
                                                                        f"{j.total_rows:,} rows" for j in written)
                    + f"); resume rotation {existing.rotation_id} instead")
            for job in jobs:
                abandon_job(conn, job.job_id)
            dropped = staged.finish(conn, existing.pending_fp or "", abandoned=True)
        state.discard_pending(self.env_file, self.credential.type)
        evidence.record("pending rotation abandoned", {"rotation": existing.rotation_id,
                                                       "pending key": existing.pending_fp,
                                                       "jobs abandoned": [j.job_id for j in jobs],
                                                       "staged jobs abandoned (side tables dropped)": dropped},
                        source="--abandon-pending: the pending key is in neither .env nor any value")

    # --- before the app stops: values no key opens, writers the tool does not know ---------------------------------
    def find_unopened(self, evidence: Evidence) -> None:
        """Then (before the app stops, in both modes): every value of the inventory (pgcrypto and Fernet) opens with
        the current or the new key, and no session of a role other than the app's that may write the inventory's
        tables is connected. Values no key opens are refused, or, with --leave-unreadable, recorded to be left byte
        for byte as they are (the verdict then says INCOMPLETE, naming them). Each is named: table, column, count,
        row ids."""
        keys = self._current_keys()
        found = {spec.table: unopened.find(self.deployment.dsn, spec, keys.old, keys.new, workers=self.workers,
                                           on_progress=progress.task(f"values no key opens, in {spec.table}",
                                                                     "values"))
                 for spec in self.specs}
        with connect(self.deployment.dsn) as conn:
            found |= {spec.table: fernet.find_unopened(conn, spec, keys.old, keys.new) for spec in self.fernet_specs}
            roles, writers, strays = self._writers(conn)
            if self.leave_unreadable:
                for table, values in found.items():
                    unopened.keep(conn, keys.new, table, values)
        lines = [u.line() for values in found.values() for u in values]
        evidence.record("sessions that may write the encrypted tables, before the app stops", {
            "rotation": keys.rotation_id, "the app's roles": list(roles),
            "connected": [w.line() for w in writers], "of other roles": [w.line() for w in strays]},
            source=stopped.WRITERS_SOURCE)
        evidence.record("values no key opens", {
            "rotation": keys.rotation_id, "old key": keys.old.fingerprint, "new key": keys.new.fingerprint,
            "found": [u.as_evidence() for values in found.values() for u in values],
            "count": sum(u.count for values in found.values() for u in values),
            "choice": ("left byte for byte as found (--leave-unreadable)" if self.leave_unreadable
                       else "refused (without --leave-unreadable)") if lines else "none found"},
            source=unopened.SOURCE + "; Fernet values: each token tried with both keys in this process, as the app "
                                     "derives its Fernet key (urlsafe_b64encode(sha256(key)))")
        require(not strays, "sessions of roles other than the app's that may write the encrypted tables are "
                            "connected: " + "; ".join(w.line() for w in strays) + ". Nothing was changed (the app runs "
                            "on the current key): stop them (or revoke their INSERT/UPDATE on those tables), then run "
                            "`rotation db-key resume`")
        require(not lines or self.leave_unreadable,
                "values no key opens (neither the current key " + keys.old.fingerprint + " nor the new one "
                + keys.new.fingerprint + "): " + "; ".join(lines) + ". Nothing was changed (the app runs on the "
                "current key, .env is as it was). Next: `rotation db-key resume --leave-unreadable` leaves them byte "
                "for byte as they are (the verdict says INCOMPLETE), or put them under the current key and run "
                "`rotation db-key resume`")
        if lines:
            record_exception(evidence, "values no key opens, left as found", lines,
                             {"rotation": keys.rotation_id, "count": sum(u.count for v in found.values() for u in v)},
                             source=unopened.SOURCE)

    # --- create (staged rotations): the expensive work while the app runs ------------------------------------------
    def stage(self, evidence: Evidence) -> None:
        """create: every value's new ciphertext computed and verified into a side table while the app still runs
        (rotation.db_key.staged), throttled, resumable. A stop-the-world rotation stages nothing: it records so."""
        keys = self._current_keys()
        current = state.load(self.env_file, self.credential.type)
        step = current.step if current else "none"
        if not self.staged or step != "create":
            evidence.record("nothing staged", {
                "rotation": keys.rotation_id, "mode": "staged" if self.staged else "stop-the-world",
                "why": (f"the rotation is at step '{step}': past staging" if self.staged else
                        "every value is re-encrypted while the app is stopped")},
                source=f"{state.state_path(self.env_file).name}; --stop-the-world")
            return
        kept = state.read_pending(self.env_file, self.credential.type)
        require(kept == keys.new, f"the new key {keys.new.fingerprint} is not kept in "
                                  f"{state.pending_path(self.env_file, self.credential.type).name}: nothing is staged "
                                  "under a key that could be lost")
        for spec in self.specs:
            result = staged.stage(self.deployment.dsn, spec, keys.old, keys.new, max_rate=self.max_rate,
                                  on_progress=progress.task(f"staging {spec.table}"))
            with connect(self.deployment.dsn) as conn:
                verified = _count_side(conn, result.job, "verified")
                total = _count_side(conn, result.job, "true")
            evidence.record(f"staging of {spec.table}", {
                "rotation": keys.rotation_id, "side table": result.job.side_name, "phase": result.job.phase,
                "rows staged and verified under the new key": f"{verified:,} of {total:,}",
                "by this run": result.rows_this_run, "seconds": round(result.seconds, 1),
                "max rows/s": self.max_rate or "no limit"},
                source=staged.STAGE_SOURCE.format(table=spec.table, pk=spec.pk, options=result.job.cipher_options)
                + f"; the app running; the key kept in {state.pending_path(self.env_file, self.credential.type).name}")
            require(result.job.phase != "staging", f"the staging of {spec.table} did not finish")
            require(verified == total, f"{total - verified:,} of {total:,} staged rows of {spec.table} do not decrypt "
                                       "with the new key to their plaintext digest")

    # --- set ------------------------------------------------------------------------------------------------------
    def write_env(self, evidence: Evidence) -> None:
        """set (1/2): .env holds the new key. Refused while the app still answers healthy or any session of its
        database role is connected: it must be stopped first, or it would write new values under the old key while
        the data moves to the new one."""
        keys = self._current_keys()
        url = self.deployment.app.health_url
        health = app_control.health(url)
        require(not health.healthy, f"the app still answers healthy at {url}: stop it before .env gets the new key")
        sessions = self._require_app_stopped(evidence)
        issued = prerequisites.stop_issued_at(self.env_file)  # the outage began with the stop command, not its proof
        self._stopped_at = issued if issued is not None else time.time()
        self._window_from = "stop command issued" if self._stopped_at == issued else "app proven stopped"
        before = envfile.get_secret(self.env_file, self.credential.env)
        written: envfile.EnvWrite | None = None
        with signals.deferred():  # .env and the state change together, whatever signal arrives
            if before != keys.new:
                require(before == keys.old, f"{self.env_file.name} holds {self.credential.env} {before.fingerprint}, "
                                            f"neither the old key {keys.old.fingerprint} nor the new one "
                                            f"{keys.new.fingerprint}: find out who changed it before going on")
                written = envfile.set_value(self.env_file, self.credential.env, keys.new)
            state.advance(self.env_file, self.credential.type, "set")
            state.discard_pending(self.env_file, self.credential.type)  # .env holds it now
        warning = written.warning() if written else None
        if warning:
            self.warnings.append(warning)
            self.notify(warning)
        evidence.record(".env updated" if before != keys.new else ".env already holds the new key", {
            "rotation": keys.rotation_id, self.credential.env: keys.new.fingerprint, "replaces": keys.old.fingerprint,
            "app": f"stopped (health: {health.status_code or 'no answer'}; sessions of its role: {sessions})",
            **(written.as_evidence() if written else {}), **({"warning": warning} if warning else {})},
            source=f"{self.env_file.name}: {self.credential.env}='<new key>' written to a temp file beside the file "
                   "it replaces (a symlink's target), fsync, rename (mode 0600), read back with python-dotenv; the "
                   f"mode found by stat before the write; GET {url} and pg_stat_activity before the write")

    def check_env(self, evidence: Evidence) -> None:
        """Then: .env has mode 0600, every other setting as in the backup that holds the old key, and the new key."""
        keys = self._current_keys()
        mode = envfile.file_mode(self.env_file)
        now = envfile.read_env(self.env_file)
        backup = self._backup_holding(keys.old)
        before = envfile.read_env(backup) if backup else {}
        changed = sorted(k for k in before.keys() | now.keys()
                         if k != self.credential.env and before.get(k) != now.get(k))
        in_env = Secret(now.get(self.credential.env, ""))
        evidence.record(".env after the update", {
            "rotation": keys.rotation_id, "mode": oct(mode), "compared with": backup.name if backup else None,
            "other settings changed": changed, self.credential.env: in_env.fingerprint},
            source=f"stat {self.env_file.name}; python-dotenv parse of {self.env_file.name} and of the backup "
                   "holding the old key, compared setting by setting (names only)")
        require(mode == envfile.SECURE_MODE, f"{self.env_file.name} has mode {oct(mode)}, not 0600")
        require(backup is not None, f"no backup holds the old key {keys.old.fingerprint} to compare with")
        require(not changed, f"the update changed other settings of {self.env_file.name}: {', '.join(changed)}")
        require(in_env == keys.new, f"{self.credential.env} in {self.env_file.name} is {in_env.fingerprint}, not the "
                                    f"new key {keys.new.fingerprint}")

    def reencrypt(self, evidence: Evidence) -> None:
        """set (2/2): every value of the inventory re-encrypted (pgcrypto columns in the database, the app's Fernet
        values here); a killed job resumes after its last committed page; no trigger of the app fires. Nothing is
        written while a session of the app's role is connected."""
        keys = self._current_keys()
        self._require_app_stopped(evidence)
        in_env = envfile.get_secret(self.env_file, self.credential.env)
        require(in_env == keys.new, f"{self.env_file.name} holds {in_env.fingerprint}, not the new key "
                                    f"{keys.new.fingerprint}: .env gets the new key before any value is re-encrypted")
        try:
            self._reencrypt_all(keys, evidence)
        except ReencryptionError as exc:
            if self._nothing_moved(keys):
                self._put_old_key_back(keys, evidence)
                raise ReencryptionError(f"{exc} {self.env_file.name} holds the old key {keys.old.fingerprint} again "
                                        f"(no value was under the new one); rotation {keys.rotation_id} is pending: "
                                        "run it again once the cause is fixed, or abandon it") from None
            raise

    def _reencrypt_all(self, keys: RotationKeys, evidence: Evidence) -> None:
        for spec in self.specs:
            with connect(self.deployment.dsn) as conn:
                staged_job = staged.find_staged(conn, spec, keys.old, keys.new) if self.staged else None
            if staged_job is not None and staged_job.phase != "done":  # done: a finished rotation checked again
                self._cutover(spec, keys, evidence)
                continue
            with connect(self.deployment.dsn) as conn:
                _, resumed = start_or_resume_job(conn, spec, keys.old, keys.new, ranges=self.workers * 4,
                                                 policy=self.credential.strength)
            result = reencrypt_table(self.deployment.dsn, keys.old, keys.new, spec=spec, workers=self.workers,
                                     policy=self.credential.strength,
                                     on_progress=progress.task(f"re-encrypting {spec.table}"))
            with connect(self.deployment.dsn) as conn:
                digests = snapshot_size(conn, result.job_id)
            self._record_job(evidence, spec, result, {"plaintext digests": digests, "resumed": resumed,
                                                      "cipher options": DEFAULT_CIPHER_OPTIONS,
                                                      "old-key decryptions per value": 1},
                             REENCRYPT_SQL.format(
                                 table=spec.table, pk=spec.pk, columns=", ".join(spec.columns),
                                 options=DEFAULT_CIPHER_OPTIONS))
        for spec in self.fernet_specs:
            result = fernet.reencrypt_fernet(self.deployment.dsn, keys.old, keys.new, spec=spec,
                                             policy=self.credential.strength,
                                             on_progress=progress.task(f"re-encrypting {spec.table} (Fernet)"))
            self._record_job(evidence, spec, result, {"resumed": result.resumed, "cipher": fernet.FERNET_CIPHER},
                             FERNET_SQL.format(table=spec.table, pk=spec.pk))

    def _cutover(self, spec: TableSpec, keys: RotationKeys, evidence: Evidence) -> None:
        """The staged rotation's cutover (the app is stopped): stragglers, the swap, the population proof."""
        result = staged.cutover(self.deployment.dsn, spec, keys.old, keys.new)
        source = staged.CUTOVER_SOURCE.format(table=spec.table, pk=spec.pk)
        evidence.record(f"cutover of {spec.table}", {
            "rotation": keys.rotation_id, "job": result.job_id, "phase": result.job.phase,
            "staged again, inserted since staging": list(result.stragglers_inserted[:20]) or 0,
            "staged again, changed since staging": list(result.stragglers_changed[:20]) or 0,
            "swapped by this run": result.swapped,
            "rows holding their verified staged ciphertext": f"{result.equal:,} of {result.rows:,} "
                                                             f"({result.at_cutover:,} staged at the cutover)",
            "rows that do not": list(result.not_equal) or 0,
            "seconds": {k: round(v, 2) for k, v in result.seconds.items()}},
            source=source + "; proof: " + staged.PROOF_SOURCE.format(table=spec.table, pk=spec.pk))
        require(result.proven, f"{spec.table}: {result.rows - result.equal:,} of {result.rows:,} rows do not hold "
                               f"their verified staged ciphertext after the swap ({spec.pk}="
                               f"{', '.join(result.not_equal)}): the cutover missed them; run the rotation again")

    def _nothing_moved(self, keys: RotationKeys) -> bool:
        """No value is under the new key yet: every write is journaled with its job's checkpoint."""
        with connect(self.deployment.dsn) as conn:
            return not [j for j in jobs_towards(conn, keys.new.fingerprint) if j.rows_done or j.status == "done"]

    def _put_old_key_back(self, keys: RotationKeys, evidence: Evidence) -> None:
        """The re-encryption failed before any value moved: .env must not be left with a key that opens no value.
        The new key goes back to the PENDING file, .env gets the old one, the state is at `create` again."""
        with signals.deferred():  # the pending file, .env and the state change together
            state.write_pending(self.env_file, self.credential.type, keys.new)
            written = envfile.set_value(self.env_file, self.credential.env, keys.old)
            state.rewind(self.env_file, self.credential.type, "create")
        evidence.record(".env put back to the old key", {
            "rotation": keys.rotation_id, self.credential.env: keys.old.fingerprint,
            "pending": keys.new.fingerprint, "why": "the rotation stopped before any value was under the new key",
            **written.as_evidence()},
            source=f"{self.env_file.name} rewritten (temp file, fsync, rename); "
                   f"{state.pending_path(self.env_file, self.credential.type).name} (0600); "
                   f"{state.state_path(self.env_file).name}: step create")

    # --- the end of every run: one of the safe states (rotation.db_key.safe_state) ------------------------------
    def settle(self, evidence: Evidence, *, next_command: str = safe_state.DEFAULT_NEXT) -> SafeState:
        """Bring the run to its safe state and say which in one line. Nothing moved: .env gets the old key back and
        the app is started and proven healthy on it. Data moved: left as it is for `resume`. Runs at the end of every
        run (the scenario's teardown, also after Ctrl-C or SIGTERM); never raises, and a signal that arrives
        meanwhile is held until it is done."""
        with signals.shielded():
            try:
                result = self._settle(evidence, next_command)
            except Exception as exc:  # noqa: BLE001  (the operator must get the line whatever happened)
                result = untold(exc, next_command)
        evidence.record("where the rotation stands", {**result.detail, "reached": result.reached,
                                                      "next step": result.line},
                        source=f"{state.state_path(self.env_file).name} (four-step state), the re-encryption jobs "
                               "towards the pending key (rotation_runbook.reencrypt_job/_range: rows_done, status), "
                               f"{self.env_file.name} by fingerprint, GET {self.deployment.app.health_url}, "
                               f"{app_control.STOP_RECORD}; rule: rotation.db_key.safe_state.decide")
        return result

    def _settle(self, evidence: Evidence, next_command: str) -> SafeState:
        progress = state.load(self.env_file, self.credential.type)
        jobs, why = self._jobs_when_answering(progress)
        kind = safe_state.decide(progress, jobs)
        keys = self._current_keys() if progress is not None else None
        if kind == "nothing moved" and keys is not None and self._env_fp() == keys.new.fingerprint:
            self._put_old_key_back(keys, evidence)
        app, app_ok = self._app_in_safe_state(kind)
        return safe_state.describe(kind, rotation=keys.rotation_id if keys else None, env_key=self._env_fp(),
                                   old_fp=keys.old.fingerprint if keys else None,
                                   new_fp=keys.new.fingerprint if keys else None, app=app, app_ok=app_ok,
                                   moved=safe_state.values_moved(jobs) if jobs else None,
                                   next_command=next_command, why_unknown=why)

    def _env_fp(self) -> str:
        return env_holds(self.env_file, self.credential.env)

    def _jobs_when_answering(self, progress: state.RotationState | None) -> tuple[list[JobSummary] | None, str]:
        """The jobs towards the pending key; the database is given SETTLE_DB_WAIT_S to come back (a restart during
        the cutover), else None and why."""
        if progress is None or not progress.in_progress or not progress.pending_fp:
            return [], ""
        deadline, said = time.monotonic() + SETTLE_DB_WAIT_S, False
        while True:
            try:
                with connect(self.deployment.dsn) as conn:
                    return jobs_towards(conn, progress.pending_fp), ""
            except psycopg.OperationalError as exc:
                if time.monotonic() >= deadline:
                    return None, f"{type(exc).__name__} for {SETTLE_DB_WAIT_S:.0f} s"
                if not said:
                    self.notify(f"the database does not answer: waiting up to {SETTLE_DB_WAIT_S:.0f} s to tell "
                                "whether any value moved")
                    said = True
                time.sleep(1)

    def _app_in_safe_state(self, kind: safe_state.Kind) -> tuple[str, bool]:
        """What the app is doing, in words, and whether that is as the safe state needs. Where the app should run on
        the key .env holds (every state but data moved and unknown), an app a run stopped is started and proven."""
        app = self.deployment.app
        stopped = app_control.stopped_by(self.env_file)
        health = app_control.health(app.health_url)
        if kind in ("data moved", "unknown"):
            if health.healthy:
                return f"the app is running (healthy at {app.health_url})", True
            return "the app is stopped" + (f" (stopped by {stopped.line()})" if stopped else ""), True
        started = ""
        if not health.healthy and stopped is not None:
            try:
                health = app_control.start_app(app, self.env_file)
                started = f"was started again by this run (stopped by {stopped.line()}) and "
            except app_control.AppControlError as exc:
                return f"the app did not start: {exc}", False
        if not health.healthy:
            return f"the app is {health.unhealthy_at(app.health_url)}", False
        if kind == "nothing moved" and app_proof.has_probe(app):
            key = envfile.get_secret(self.env_file, self.credential.env)
            proof = app_proof.probe_key(app, self.deployment.config, self.deployment.dsn, key)
            if not proof.proven:
                return f"the app {started}is healthy but does not read its data with that key: {proof.why}", False
            return f"the app {started}is running on it (healthy, and its probe read a value under that key)", True
        return f"the app {started}is running (healthy at {app.health_url})", True

    def _record_job(self, evidence: Evidence, spec: TableSpec, result: JobResult, extra: dict[str, object],
                    source: str) -> None:
        keys = self._current_keys()
        evidence.record(f"re-encryption of {spec.table}", {
            "rotation": keys.rotation_id, "job": result.job_id, "rows": result.rows_total,
            "rows re-encrypted by this run": result.rows_done, "seconds": round(result.seconds, 3),
            "triggers": result.triggers, "workers": result.workers,
            "rows written during the rotation, taken up": {"count": len(result.stragglers),
                                                           spec.pk: list(result.stragglers[:20])}, **extra},
            source=source)

    def _require_app_stopped(self, evidence: Evidence) -> str:
        """No session of the app's database role is connected (pg_stat_activity); refuse naming each one."""
        with connect(self.deployment.dsn) as conn:
            roles, _, writers = self._writers(conn)
            found = stopped.app_sessions(conn, roles)
        evidence.record("sessions of the app's database role", {"roles": list(roles),
                                                                "connected": [s.line() for s in found],
                                                                "sessions of other roles that may write the "
                                                                "encrypted tables": [w.line() for w in writers]},
                        source=stopped.SOURCE + "; " + stopped.WRITERS_SOURCE)
        require(not found, f"the app is not stopped: {len(found)} session{'s' if len(found) != 1 else ''} of its "
                           f"database role {'are' if len(found) != 1 else 'is'} connected: "
                           + "; ".join(s.line() for s in found) + ". Nothing was written: stop every instance of "
                           "the app (and anything else using its role), then run the rotation again")
        require(not writers, "sessions of roles other than the app's that may write the encrypted tables are "
                             "connected: " + "; ".join(w.line() for w in writers) + ". Nothing was written: stop "
                             "them (or revoke their INSERT/UPDATE on those tables), then run `rotation db-key resume`")
        return "none"

    def _writers(self, conn: psycopg.Connection) -> tuple[tuple[str, ...], list[stopped.Writer],
                                                          list[stopped.Writer]]:
        """(the app's roles, every connected session that may write the inventory's tables, those of other roles)."""
        roles = stopped.app_roles(conn, self.deployment.config, self.env_file)
        writers = stopped.writer_sessions(conn, [spec.table for spec in (*self.specs, *self.fernet_specs)])
        return roles, writers, stopped.foreign(writers, roles)

    def _writers_now(self) -> str:
        """Sessions of roles other than the app's that may write the encrypted tables, connected now: a failed proof
        names them (a writer the tool does not know is the likeliest cause of a value it did not put there)."""
        with connect(self.deployment.dsn) as conn:
            _, _, writers = self._writers(conn)
        if not writers:
            return ""
        return (". Connected now, of roles other than the app's, and able to write the encrypted tables: "
                + "; ".join(w.line() for w in writers) + ": stop them, then run `rotation db-key resume`")

    # --- test -----------------------------------------------------------------------------------------------------
    def verify_new_key(self, evidence: Evidence) -> None:
        """Then: every value decrypts with the new key to the plaintext it had before; NULLs stay NULL; every row of
        the table is known to the snapshot; nothing but ciphertext changed."""
        keys = self._current_keys()
        problems: list[str] = []
        for spec, kind in [*((s, "pgcrypto") for s in self.specs), *((s, "fernet") for s in self.fernet_specs)]:
            with connect(self.deployment.dsn) as conn:
                job = need(find_job(conn, spec, keys.old, keys.new),
                           f"no re-encryption of {spec.table} from {keys.old.fingerprint} to {keys.new.fingerprint} "
                           "was started: there is nothing to verify")
                cleaned = cleaned_job(conn, job[0])
                if cleaned is not None:
                    problems += self._recheck(conn, spec, kind, cleaned, evidence)
                    continue
                swapped = staged.find_staged(conn, spec, keys.old, keys.new) if kind == "pgcrypto" else None
                if swapped is not None and swapped.phase == "swapped" and swapped.job_id == job[0]:
                    check = staged.verify_staged(conn, spec, swapped, job[0], keys.old, keys.new)
                    source = staged.VERIFY_SOURCE
                else:
                    check = (verify(conn, spec, job[0], keys.old, keys.new, dsn=self.deployment.dsn,
                                    workers=self.workers,
                                    on_progress=progress.task(f"verifying {spec.table} under the new key", "values"))
                             if kind == "pgcrypto"
                             else fernet.verify_fernet(conn, spec, job[0], keys.old, keys.new))
                    source = VERIFY_SQL if kind == "pgcrypto" else FERNET_VERIFY
            problems += self._record_check(evidence, spec, kind, job[0], check,
                                           source.format(table=spec.table, pk=spec.pk))
        require(not problems, "; ".join(problems) + self._writers_now())
        state.advance(self.env_file, self.credential.type, "test")  # every value proven (none opens with the old key)

    def _record_check(self, evidence: Evidence, spec: TableSpec, kind: str, job_id: int, check: PopulationCheck,
                      source: str) -> list[str]:
        keys = self._current_keys()
        evidence.record(f"population check of {spec.table}", {
            "rotation": keys.rotation_id, "job": job_id, "summary": check.summary(),
            "columns": [c.__dict__ for c in check.columns], "failures": check.failure_lines()}, source=source)
        if check.values_total:
            query = populations.under_new_key(self.deployment.dsn, spec, kind, keys.new)
            if check.values_left:  # counted by the psql query, named as an exception here
                query = dataclasses.replace(query, census={**query.census, "left": check.values_left})
            evidence.population(f"values in {spec.table} verified under the new key", check.values_verified,
                                check.values_total, source=source, query=query)
        if check.ok and check.values_verified == check.values_total:
            return []
        return [check.summary() + ("; " + "; ".join(check.failure_lines()) if check.failures else "")]

    def _recheck(self, conn: psycopg.Connection, spec: TableSpec, kind: str, cleaned: CleanedJob,
                 evidence: Evidence) -> list[str]:
        """A finished rotation checked again: its digests are gone (deleted once it was verified), so this proves
        what can still be proven: every value opens with the new key and none with the old."""
        keys = self._current_keys()
        left = sum(len(ids) for ids in unopened.left(conn, keys.new, spec).values())  # never counted as opened
        if kind == "pgcrypto":
            new, old = key_reach(conn, spec, keys.new), key_reach(conn, spec, keys.old)
            total, opened, stale = new.total - left, new.total_opened, old.total_opened
        else:
            total, opened, stale = fernet.reach(conn, spec, keys.new, keys.old)
            total -= left
        evidence.record(f"population check of {spec.table}", {
            "rotation": keys.rotation_id, "job": cleaned.job_id,
            "proven when the rotation was verified": {"values": cleaned.verified_values, "at": cleaned.verified_at},
            "per-value digests deleted": cleaned.digests_removed_at,
            "now": f"{opened:,} of {total:,} values open with the new key, {stale:,} with the old"},
            source=RECHECK_SQL.format(table=spec.table))
        if total:
            query = populations.under_new_key(self.deployment.dsn, spec, kind, keys.new)
            evidence.population(f"values in {spec.table} opening with the new key (re-check)", opened, total,
                                source=RECHECK_SQL.format(table=spec.table), query=query)
        return [] if opened == total and not stale else [
            f"{spec.table}: {total - opened:,} of {total:,} values do not open with the new key, {stale:,} open with "
            "the old (checked again after the rotation finished)"]

    def verify_old_key_dead(self, evidence: Evidence) -> None:
        """Then: the completeness sweep: the old key opens no value of any bytea or text column of any table of the
        app's schemas (the inventory's and every other)."""
        keys = self._current_keys()
        with connect(self.deployment.dsn) as conn:
            result = sweep.sweep(conn, keys.old, dsn=self.deployment.dsn, workers=self.sweep_workers,
                                 on_progress=progress.task("sweeping the app's schemas for the old key", "kB"))
            schema = current_schema(conn)
            left = unopened.left_lines(conn, keys.new, (*self.specs, *self.fernet_specs))
        evidence.record("values the old key opens, anywhere in the app's schemas", {
            "rotation": keys.rotation_id, "old key": keys.old.fingerprint, **result.as_evidence(),
            "left as found (no key opens them; among those the old key does not open, never verified)": left,
            "connections": f"{self.sweep_workers} of --workers {self.workers}: the app is running again and keeps "
                           "a core for its queries",
            "found": [h.line() for h in result.opened]}, source=sweep.QUERY_SOURCE)
        if result.candidates:
            evidence.population("encrypted-looking values the old key no longer opens",
                                result.candidates - sum(h.opened for h in result.opened), result.candidates,
                                source=sweep.QUERY_SOURCE, query=populations.swept(result, keys.old))
        self._record_old_key_populations(evidence, result, schema)
        require(not result.unreadable, "the sweep cannot read " + ", ".join(result.unreadable) + ": grant SELECT on "
                                       "them to this role, or no claim can be made that the old key opens nothing")
        require(not result.opened, f"values still decrypt with the old key {keys.old.fingerprint}: "
                                   + "; ".join(h.line() for h in result.opened))

    def _record_old_key_populations(self, evidence: Evidence, result: sweep.SweepResult, schema: str) -> None:
        """Per pgcrypto table of the inventory, the sweep's figure for its columns, with the psql query an auditor
        re-runs it with (every non-NULL value there is a PGP message, so the two count the same values)."""
        keys = self._current_keys()
        for spec in self.specs:
            hits = [h for h in result.hits
                    if h.table == f"{schema}.{spec.table}" and h.kind == "PGP" and h.column in spec.columns]
            total = sum(h.candidates for h in hits)
            if total:
                evidence.population(f"values in {spec.table} the old key no longer opens",
                                    total - sum(h.opened for h in hits), total, source=sweep.QUERY_SOURCE,
                                    query=populations.old_key(self.deployment.dsn, spec, keys.old))

    # --- finish ---------------------------------------------------------------------------------------------------
    def log(self, evidence: Evidence) -> None:
        """finish (1/2): the rotation log row, written once (a rerun finds it by the old key's hash)."""
        keys = self._current_keys()
        current = state.load(self.env_file, self.credential.type)
        step = current.step if current else "none"
        require(step in ("test", "finish"), f"rotation {keys.rotation_id} is at step '{step}': every value must be "
                                            "proven under the new key and none under the old before it is logged")
        with connect(self.deployment.dsn) as conn:
            found = find_rotation(conn, self.credential, keys.old)
            record = found or log_rotation(conn, self.credential, rotated_by=self.deployment.operator,
                                           previous=keys.old, reason=self.reason)
        evidence.record("rotation log row already written" if found else "rotation logged",
                        {"rotation": keys.rotation_id, **record.as_evidence()}, source=LOG_SQL)
        self._finish_when_done(keys, evidence)

    def check_logged(self, evidence: Evidence) -> None:
        """Then: the row is there, with the previous key's hash, who rotated, and the next rotation due one interval
        after this one."""
        keys = self._current_keys()
        with connect(self.deployment.dsn) as conn:
            found = find_rotation(conn, self.credential, keys.old)
        evidence.record("rotation log row read back", {"rotation": keys.rotation_id,
                                                       "row": found.as_evidence() if found else None},
                        source=FIND_SQL)
        found = need(found, f"no rotation log row records the rotation of {self.credential.type} from the old key "
                            f"{keys.old.fingerprint} (matched on the previous key hash)")
        require(bool(found.rotated_by), "the rotation log row names no one in rotated_by")
        self._require_interval(found)

    def _require_interval(self, found: RotationRecord) -> None:
        interval = found.next_rotation_due - found.rotated_at if found.next_rotation_due else None
        require(interval == self.credential.interval,
                f"the next rotation is due {interval} after this one, not {self.credential.interval.days} days")

    def check_app_key(self, evidence: Evidence) -> None:
        """Then: the app runs on the new key (the configured proof: a probe that makes it read one value, or its
        process started after .env changed). Once it does and the rotation is logged, the rotation is finished."""
        keys = self._current_keys()
        proof = self._app_proof(keys)
        window = ({"downtime window": {
            "mode": "staged" if self.staged else "stop-the-world",
            f"from ({self._window_from})": _utc(dt.datetime.fromtimestamp(self._stopped_at, dt.UTC)),
            "to (app proven on the new key)": _utc(dt.datetime.now(dt.UTC)),
            "seconds (at most)": round(time.time() - self._stopped_at, 3)}}
            if self._stopped_at is not None and proof.proven else {})
        evidence.record("key loaded by the app", {"rotation": keys.rotation_id, **proof.detail, **window},
                        source=self._proof_source(proof))
        require(proof.proven, proof.why)
        self._finish_when_done(keys, evidence)

    def _proof_source(self, proof: app_proof.AppProof) -> str:
        app = self.deployment.app
        if proof.method.is_probe:
            return (f"{app.probe_url or app.probe_command} ({app.probe_field or 'whole answer'}); its SHA-256 "
                    "compared with digest(pgp_sym_decrypt(<value>, <new key>), 'sha256') of the same row; " + KEYS)
        return (f"{proof.method}: {app_control.start_source(app)}, against the modification time of "
                f"{self.env_file.name} (the app reads .env only at start)")

    def _finish_when_done(self, keys: RotationKeys, evidence: Evidence) -> None:
        """PENDING becomes CURRENT once the rotation is logged and the app runs on the new key (in either order)."""
        current = state.load(self.env_file, self.credential.type)
        if current is None or current.step != "test":
            return
        with connect(self.deployment.dsn) as conn:
            logged = find_rotation(conn, self.credential, keys.old) is not None
        if logged and self._app_proof(keys).proven:
            state.advance(self.env_file, self.credential.type, "finish")
            state.discard_pending(self.env_file, self.credential.type)
            evidence.record("rotation finished", {"rotation": keys.rotation_id, "current key": keys.new.fingerprint,
                                                  "previous key": keys.old.fingerprint},
                            source=f"{state.state_path(self.env_file).name}: step finish (PENDING -> CURRENT)")
            self._forget_digests(keys, evidence)

    def _forget_digests(self, keys: RotationKeys, evidence: Evidence) -> None:
        """The rotation is verified and finished: its per-value digests leave the app's database; each job keeps
        its summary (rows, counts, when it was verified)."""
        with connect(self.deployment.dsn) as conn:
            jobs = [j for j in jobs_towards(conn, keys.new.fingerprint)]
            removed = forget_digests(conn, [j.job_id for j in jobs])
            dropped = staged.finish(conn, keys.new.fingerprint)
        evidence.record("per-value digests removed", {"rotation": keys.rotation_id, "jobs": [j.job_id for j in jobs],
                                                      "digest rows deleted (one per table row)": removed,
                                                      "staged jobs finished (side tables dropped)": dropped},
                        source="UPDATE rotation_runbook.reencrypt_job SET verified_values = <digests>, verified_at, "
                               "digests_removed_at = now(); DELETE FROM rotation_runbook.row_digest WHERE "
                               "job_id = ANY(<this rotation's jobs>)")

    def _app_proof(self, keys: RotationKeys) -> app_proof.AppProof:
        health = app_control.health(self.deployment.app.health_url)
        if not health.healthy:
            return app_proof.AppProof(app_proof.proof_method(self.deployment.app) or app_proof.ProofMethod.NONE, False,
                                      f"the app is not healthy at {self.deployment.app.health_url}: HTTP "
                                      f"{health.status_code}", {"health": health.status_code})
        proof = app_proof.prove_key(self.deployment.app, self.deployment.config, self.deployment.dsn, self.env_file,
                                    keys.new)
        return app_proof.AppProof(proof.method, proof.proven, proof.why, {"health": health.status_code,
                                                                           "new key": keys.new.fingerprint,
                                                                           **proof.detail})

    def _require_app_proof(self) -> None:
        """Before anything changes: the configuration says how the app will be proven on the new key."""
        require(app_proof.proof_method(self.deployment.app) is not None, app_proof.NO_PROOF)

    # --- keys of a rotation in progress, or just finished ---------------------------------------------------------
    def _current_keys(self) -> RotationKeys:
        if self._keys is None:
            existing = need(state.load(self.env_file, self.credential.type),
                            f"no {self.credential.label} rotation was started beside {self.env_file.name}: a new key "
                            "must be generated first")
            self._keys = self._recover(existing)
        return self._keys

    def _recover(self, existing: state.RotationState) -> RotationKeys:
        """The keys of the rotation the state records: while in progress, CURRENT -> PENDING; once finished,
        PREVIOUS -> CURRENT."""
        old_fp, new_fp = ((existing.current_fp, existing.pending_fp) if existing.in_progress
                          else (existing.previous_fp, existing.current_fp))
        pending = state.read_pending(self.env_file, self.credential.type)
        new = self._find_key(new_fp, [pending] if pending else [], "new")
        old = self._find_key(old_fp, [], "old")
        return RotationKeys(old, new, existing.rotation_id)

    def _find_key(self, fp: str | None, first: list[Secret], which: str) -> Secret:
        candidates = [*first, *(Secret(v) for v in self._env_values(self.env_file)),
                      *(Secret(v) for b in envfile.backups(self.env_file) for v in self._env_values(b))]
        return need(next((c for c in candidates if c.fingerprint == fp), None),
                    f"the {which} key {fp} of the rotation is in neither {self.env_file.name}, its backups nor the "
                    "pending file: restore the backup that holds it before resuming")

    def _env_values(self, path: Path) -> list[str]:
        value = envfile.read_env(path).get(self.credential.env, "")
        return [value] if value else []

    def _backup_holding(self, key: Secret) -> Path | None:
        """The newest backup of .env whose key is this one."""
        return next((b for b in envfile.backups(self.env_file)
                     if any(Secret(v) == key for v in self._env_values(b))), None)

    def _other_credentials(self) -> list[Secret]:
        values = envfile.read_env(self.env_file)
        return [Secret(values[c.env]) for c in self.deployment.config.credentials
                if c.type != self.credential.type and values.get(c.env)]

    def _next_due(self, finished: state.RotationState) -> dt.datetime:
        return dt.datetime.fromisoformat(finished.updated_at) + self.credential.interval

    def _due(self, finished: state.RotationState) -> bool:
        return dt.datetime.now(dt.UTC) >= self._next_due(finished) - self.credential.warning

    def _record_keys(self, evidence: Evidence, name: str, keys: RotationKeys, extra: dict[str, object]) -> None:
        evidence.register_secret(keys.old)
        evidence.register_secret(keys.new)
        evidence.record(name, {"rotation": keys.rotation_id, "new key": keys.new.fingerprint,
                               "length": len(keys.new), "old key": keys.old.fingerprint,
                               "strength policy": self.credential.strength.__dict__, **extra},
                        source=f"{state.state_path(self.env_file).name} (four-step state); "
                               f"{state.pending_path(self.env_file, self.credential.type).name} (PENDING key, 0600); "
                               f".env backups searched by fingerprint for the old key")


def _count_side(conn: psycopg.Connection, job: staged.StagedJob, condition: str) -> int:
    """Rows of a staged job's side table meeting `condition` (a fixed SQL text from this module)."""
    from psycopg import sql

    row = conn.execute(sql.SQL("SELECT count(*) FILTER (WHERE {}) FROM {}").format(sql.SQL(condition),
                                                                                 job.side_table)).fetchone()
    conn.commit()
    return int(row[0]) if row else 0


def _to_stderr(line: str) -> None:
    print(line, file=sys.__stderr__, flush=True)


def _utc(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
