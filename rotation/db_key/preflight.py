"""What the DB key rotation refuses before it writes a single value: an old key that does not open the data, a new key
the strength policy rejects. Each attempt goes through the same entry point a rotation uses (starting the
re-encryption job), and each check reads the refusal and the data afterwards."""

from __future__ import annotations

from rotation.core import envfile
from rotation.core.database import connect
from rotation.core.deployment import Deployment
from rotation.core.keys import WeakSecretError, generate_key
from rotation.core.proof import Evidence, require
from rotation.core.secret import Secret
from rotation.db_key.procedure import CREDENTIAL
from rotation.db_key.reencrypt import ReencryptionError, TableSpec, abandon_job, pgcrypto_specs, start_or_resume_job
from rotation.db_key.verify import key_reach

ATTEMPT_SOURCE = ("rotation.db_key.reencrypt.start_or_resume_job per pgcrypto table of the inventory: strength "
                  "policy, then rotation_runbook.try_decrypt(<first non-NULL value>, $old) per column, before any job "
                  "is created")


class DbKeyPreflight:
    """Runbook section 1's refusals: attempts that must be stopped before anything is written, and their checks."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.credential = deployment.config.credential(CREDENTIAL)
        self.specs: tuple[TableSpec, ...] = pgcrypto_specs(deployment.config)
        self.refusal: Exception | None = None

    def start_with_wrong_old_key(self, evidence: Evidence) -> None:
        """When: the re-encryption is started with an old key that opens nothing (and a good new key)."""
        self._attempt(generate_key(), generate_key(), evidence)

    def start_with_short_new_key(self, length: int, evidence: Evidence) -> None:
        """When: the re-encryption is started with the right old key and a new key of `length` characters."""
        self._attempt(self._current(), Secret(generate_key().reveal()[:length]), evidence)

    def check_refused_old_key(self, evidence: Evidence) -> None:
        """Then: refused, and the refusal names the column (table.column) the old key does not open."""
        named = [f"{s.table}.{c}" for s in self.specs for c in s.columns if f"{s.table}.{c}" in str(self.refusal)]
        self._record_refusal(evidence, named)
        require(isinstance(self.refusal, ReencryptionError), f"the wrong old key was not refused ({self._found()})")
        require(bool(named), f"the refusal names no encrypted column: {self.refusal}")

    def check_refused_weak_key(self, evidence: Evidence) -> None:
        """Then: refused by the strength policy."""
        self._record_refusal(evidence, [])
        require(isinstance(self.refusal, WeakSecretError), f"the weak new key was not refused ({self._found()})")

    def check_data_unchanged(self, evidence: Evidence) -> None:
        """Then: every encrypted value still opens with the key in .env."""
        current = self._current()
        closed: list[str] = []
        for spec in self.specs:
            with connect(self.deployment.dsn) as conn:
                reach = key_reach(conn, spec, current)
            evidence.record(f"values of {spec.table} the current key opens", {
                "key": current.fingerprint, "columns": reach.as_evidence()},
                source=f"SELECT count(<column>), count(rotation_runbook.try_decrypt(<column>, $current)) FROM "
                       f"{spec.table}, per column")
            closed += [f"{spec.table}.{c}: {reach.values[c] - reach.opened[c]:,} of {reach.values[c]:,}"
                       for c in spec.columns if reach.opened[c] != reach.values[c]]
        require(not closed, f"values no longer open with the current key {current.fingerprint}: {'; '.join(closed)}")

    def _current(self) -> Secret:
        return envfile.get_secret(self.deployment.env_file, self.credential.env)

    def _attempt(self, old: Secret, new: Secret, evidence: Evidence) -> None:
        evidence.register_secret(old)
        evidence.register_secret(new)
        self.refusal = None
        for spec in self.specs:
            with connect(self.deployment.dsn) as conn:
                try:
                    job_id, _ = start_or_resume_job(conn, spec, old, new, ranges=1, policy=self.credential.strength)
                except (ReencryptionError, WeakSecretError) as exc:
                    self.refusal = exc
                    break
                abandon_job(conn, job_id)  # not refused: leave no running job behind; the check then fails
        evidence.record("attempt", {"old key": old.fingerprint, "new key": new.fingerprint,
                                    "new key length": len(new), "refused": self._found()}, source=ATTEMPT_SOURCE)

    def _found(self) -> str:
        return f"{type(self.refusal).__name__}: {self.refusal}" if self.refusal else "nothing was refused"

    def _record_refusal(self, evidence: Evidence, named: list[str]) -> None:
        evidence.record("refusal", {"refused": self._found(), "columns named": named}, source=ATTEMPT_SOURCE)
