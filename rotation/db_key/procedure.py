"""Runbook section 1, Database Encryption Key Rotation, as idempotent steps over the four-step state.

    create   generate_key         a new key from the CSPRNG, judged by the registry's strength policy, kept as the
                                  PENDING credential (.rotation-pending.db_encryption_key, 0600) until .env holds it
    set      write_env            .env holds the new key (refused while the app still answers healthy)
             reencrypt            every value of the inventory's pgcrypto columns re-encrypted (a killed job resumes)
    test     verify_new_key       every value decrypts with the new key to its plaintext before the rotation, and
                                  none with the old key (per value of the snapshot)
             verify_old_key_dead  no value of the whole table decrypts with the old key (rows added since included)
    finish   log, check_app_key   the rotation log row (once), and the app proven on the new key: PENDING -> CURRENT

Each step may run again after a kill at any point: it reads the state and either finishes its work or records that it
was done. A resumed run finds its keys where nothing else keeps them: the new key in the PENDING file or .env, the old
key in the .env backup whose fingerprint the state names. Every record carries the rotation id (`rotation`).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rotation.core import app_control, envfile, state
from rotation.core.database import connect
from rotation.core.deployment import Deployment
from rotation.core.keys import WeakSecretError, check_strength, generate_key
from rotation.core.proof import CheckFailed, Evidence, require
from rotation.core.rotation_log import RotationRecord, find_rotation, log_rotation
from rotation.core.secret import Secret
from rotation.db_key import populations
from rotation.db_key.reencrypt import (
    DEFAULT_CIPHER_OPTIONS,
    TableSpec,
    abandon_job,
    find_job,
    jobs_towards,
    pgcrypto_specs,
    start_or_resume_job,
)
from rotation.db_key.reencrypt import reencrypt as reencrypt_table
from rotation.db_key.verify import PopulationCheck, key_reach, sample_opens, snapshot, verify

CREDENTIAL = "db_encryption_key"
T = TypeVar("T")

REENCRYPT_SQL = ("UPDATE {table} SET <column> = pgp_sym_encrypt(pgp_sym_decrypt(<column>, $old), $new, '{options}') "
                 "for each of {columns}, in keyset pages of 2,000 rows per primary-key range ({pk}), each page "
                 "committed with its range's checkpoint in rotation_runbook.reencrypt_range; keys as bound parameters")
SNAPSHOT_SQL = ("INSERT INTO rotation_runbook.plaintext_digest SELECT {pk}, <column>, "
                "hmac(pgp_sym_decrypt(<column>, $old), $new, 'sha256') FROM {table} (once per job, atomically)")
VERIFY_SQL = ("rotation_runbook.plaintext_digest joined to {table} on {pk}, per column: "
              "hmac(rotation_runbook.try_decrypt(<column>, $new), $new, 'sha256') = the digest taken before; "
              "rotation_runbook.try_decrypt(<column>, $old) IS NULL; NULLs kept; rows counted before and after")
OLD_KEY_SQL = "SELECT count(<column>), count(rotation_runbook.try_decrypt(<column>, $old)) FROM {table}, per column"
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


@dataclass(frozen=True)
class AppKeyProof:
    proven: bool
    why: str  # what was found, when not proven
    detail: dict[str, object]


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
                 abandon_pending: bool = False, scheduled: bool = False) -> None:
        self.deployment = deployment
        self.credential = deployment.config.credential(CREDENTIAL)
        self.reason = reason
        self.workers = workers or os.cpu_count() or 2
        self.abandon_pending = abandon_pending
        self.scheduled = scheduled
        self.specs: tuple[TableSpec, ...] = pgcrypto_specs(deployment.config)
        self._keys: RotationKeys | None = None

    # --- what the rotation works on ---------------------------------------------------------------------------------
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
        found: dict[str, tuple[int, bool | None]] = {}
        with connect(self.deployment.dsn) as conn:
            for spec in self.specs:
                found |= {f"{spec.table}.{c}": v for c, v in sample_opens(conn, spec, current).items()}
        evidence.record("encrypted data under the current key", {
            "key": current.fingerprint, "length": len(current),
            "columns": {name: {"values": n, "first value opens": opens} for name, (n, opens) in found.items()}},
            source=f"{self.env_file.name}: {self.credential.env}; per inventory column: count(<column>) and "
                   "rotation_runbook.try_decrypt(<first non-NULL value>, $key)")
        unreadable = [name for name, (_, opens) in found.items() if opens is False]
        require(not unreadable, f"the current key {current.fingerprint} in {self.env_file.name} does not open "
                                f"{', '.join(unreadable)}: the data is not under the key the app is configured with")

    # --- create ---------------------------------------------------------------------------------------------------
    def generate_key(self, evidence: Evidence) -> None:
        """create: a new key, kept as PENDING; or, on a rerun, the rotation that is already under way."""
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
        state.discard_pending(self.env_file, self.credential.type)
        evidence.record("pending rotation abandoned", {"rotation": existing.rotation_id,
                                                       "pending key": existing.pending_fp,
                                                       "jobs abandoned": [j.job_id for j in jobs]},
                        source="--abandon-pending: the pending key is in neither .env nor any value")

    # --- set ------------------------------------------------------------------------------------------------------
    def write_env(self, evidence: Evidence) -> None:
        """set (1/2): .env holds the new key. Refused while the app still answers healthy: it must be stopped first,
        or it would write new values under the old key while the data moves to the new one."""
        keys = self._current_keys()
        url = self.deployment.app.health_url
        health = app_control.health(url)
        require(not health.healthy, f"the app still answers healthy at {url}: stop it before .env gets the new key")
        before = envfile.get_secret(self.env_file, self.credential.env)
        if before != keys.new:
            require(before == keys.old, f"{self.env_file.name} holds {self.credential.env} {before.fingerprint}, "
                                        f"neither the old key {keys.old.fingerprint} nor the new one "
                                        f"{keys.new.fingerprint}: find out who changed it before going on")
            envfile.set_value(self.env_file, self.credential.env, keys.new)
        state.advance(self.env_file, self.credential.type, "set")
        state.discard_pending(self.env_file, self.credential.type)  # .env holds it now
        evidence.record(".env updated" if before != keys.new else ".env already holds the new key", {
            "rotation": keys.rotation_id, self.credential.env: keys.new.fingerprint, "replaces": keys.old.fingerprint,
            "app": f"stopped (health: {health.status_code or 'no answer'})"},
            source=f"{self.env_file.name}: {self.credential.env}='<new key>' written to a temp file, fsync, rename "
                   f"(mode 0600), read back with python-dotenv; GET {url} before the write")

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
        """set (2/2): every value of every pgcrypto column in the inventory re-encrypted; a killed job resumes after
        its last committed page."""
        keys = self._current_keys()
        for spec in self.specs:
            with connect(self.deployment.dsn) as conn:
                job_id, resumed = start_or_resume_job(conn, spec, keys.old, keys.new, ranges=self.workers * 4,
                                                      policy=self.credential.strength)
                digests = snapshot(conn, spec, job_id, keys.old, keys.new)
            result = reencrypt_table(self.deployment.dsn, keys.old, keys.new, spec=spec, workers=self.workers,
                                     policy=self.credential.strength)
            evidence.record(f"re-encryption of {spec.table}", {
                "rotation": keys.rotation_id, "job": result.job_id, "resumed": resumed, "rows": result.rows_total,
                "rows re-encrypted by this run": result.rows_done, "plaintext digests": digests,
                "seconds": round(result.seconds, 3), "cipher options": DEFAULT_CIPHER_OPTIONS},
                source=SNAPSHOT_SQL.format(table=spec.table, pk=spec.pk) + "; then " + REENCRYPT_SQL.format(
                    table=spec.table, pk=spec.pk, columns=", ".join(spec.columns), options=DEFAULT_CIPHER_OPTIONS))

    # --- test -----------------------------------------------------------------------------------------------------
    def verify_new_key(self, evidence: Evidence) -> None:
        """Then: every value decrypts with the new key to the plaintext it had before; NULLs stay NULL; no row is
        gained or lost."""
        keys = self._current_keys()
        checks: list[PopulationCheck] = []
        for spec in self.specs:
            with connect(self.deployment.dsn) as conn:
                job = need(find_job(conn, spec, keys.old, keys.new),
                           f"no re-encryption of {spec.table} from {keys.old.fingerprint} to {keys.new.fingerprint} "
                           "was started: there is nothing to verify")
                check = verify(conn, spec, job[0], keys.old, keys.new)
            checks.append(check)
            evidence.record(f"population check of {spec.table}", {
                "rotation": keys.rotation_id, "job": job[0], "summary": check.summary(),
                "columns": [c.__dict__ for c in check.columns], "failures": check.failure_lines()},
                source=VERIFY_SQL.format(table=spec.table, pk=spec.pk))
            if check.values_total:
                evidence.population(f"values in {spec.table} verified under the new key", check.values_verified,
                                    check.values_total, source=VERIFY_SQL.format(table=spec.table, pk=spec.pk),
                                    query=populations.new_key(self.deployment.dsn, spec, keys.new))
        for check in checks:
            nulls_kept = all(c.nulls_kept == c.nulls_before for c in check.columns)
            require(check.values_verified == check.values_total and check.rows_before == check.rows_after
                    and nulls_kept and not check.failures,
                    check.summary() + ("; " + "; ".join(check.failure_lines()) if check.failures else ""))
        state.advance(self.env_file, self.credential.type, "test")  # every value proven (none opens with the old key)

    def verify_old_key_dead(self, evidence: Evidence) -> None:
        """Then: the old key opens no value of the inventory's pgcrypto columns (each is tried with it)."""
        keys = self._current_keys()
        opened: list[str] = []
        for spec in self.specs:
            with connect(self.deployment.dsn) as conn:
                reach = key_reach(conn, spec, keys.old)
            opened += reach.opened_lines()
            evidence.record(f"values of {spec.table} the old key opens", {
                "rotation": keys.rotation_id, "old key": keys.old.fingerprint, "columns": reach.as_evidence()},
                source=OLD_KEY_SQL.format(table=spec.table))
            if reach.total:
                evidence.population(f"values in {spec.table} the old key no longer opens",
                                    reach.total - reach.total_opened, reach.total,
                                    source=OLD_KEY_SQL.format(table=spec.table),
                                    query=populations.old_key(self.deployment.dsn, spec, keys.old))
        require(not opened, f"values still decrypt with the old key {keys.old.fingerprint}: {'; '.join(opened)}")

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
        """Then: the app runs on the new key. Once it does and the rotation is logged, the rotation is finished."""
        keys = self._current_keys()
        proof = self._app_proof(keys)
        evidence.record("key loaded by the app", {"rotation": keys.rotation_id, **proof.detail},
                        source=f"GET {self.deployment.app.health_url}: checks.database.key_fingerprint and key_length")
        require(proof.proven, proof.why)
        self._finish_when_done(keys, evidence)

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

    def _app_proof(self, keys: RotationKeys) -> AppKeyProof:
        url = self.deployment.app.health_url
        health = app_control.health(url)
        checks = health.body.get("checks")
        database = checks.get("database") if isinstance(checks, dict) else None
        database = database if isinstance(database, dict) else {}
        loaded, length = database.get("key_fingerprint"), database.get("key_length")
        detail: dict[str, object] = {"health": health.status_code, "key loaded": loaded, "key length": length,
                                     "new key": keys.new.fingerprint}
        if not health.healthy:
            return AppKeyProof(False, f"the app is not healthy at {url}: HTTP {health.status_code}", detail)
        if loaded is None:
            return AppKeyProof(False, f"the app's health answer at {url} does not say which key it loaded", detail)
        if loaded != keys.new.fingerprint:
            which = "the old key" if loaded == keys.old.fingerprint else "another key"
            return AppKeyProof(False, f"the app runs on {which} {loaded}, not the new key {keys.new.fingerprint}",
                               detail)
        minimum = self.credential.strength.min_length
        if not isinstance(length, int) or length < minimum:
            return AppKeyProof(False, f"the app loaded a key of {length} characters; at least {minimum} are required",
                               detail)
        return AppKeyProof(True, "", detail)

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
