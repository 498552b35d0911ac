"""Troubleshooting "Decryption fails after key rotation": which key opens each value, and finishing the re-encryption.

The runbook counts non-NULL values, which cannot tell old ciphertext from new. Here every value is tried with the new
key and then the old one, and a value neither key opens is named by its row id and column. The repair is the DB key
procedure's own resumable steps (rotation.db_key.procedure), with the old key from the .env backup the rotation
state names; a rotation done by hand (no state) is finished with the newest backup whose key differs from .env's.
Findings name rows, columns and fingerprints, never a key.

It is the runbook's Troubleshooting entry, but its diagnosis and repair are the DB key procedure's own re-encryption,
verification and resumable steps, so it lives in this section: the runbook's sections import none of one another
(the import-linter contract "independence" in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from rotation.core import envfile, state
from rotation.core.config import Credential
from rotation.core.database import NEW_KEY, OLD_KEY, connect, load_keys
from rotation.core.deployment import Deployment
from rotation.core.proof import CheckFailed, Evidence, require
from rotation.core.secret import Secret
from rotation.db_key import populations
from rotation.db_key.procedure import CREDENTIAL, DbKeyRotation
from rotation.db_key.reencrypt import (
    ReencryptionError,
    TableSpec,
    find_job,
    pgcrypto_specs,
    start_or_resume_job,
)
from rotation.db_key.reencrypt import reencrypt as reencrypt_table
from rotation.db_key.verify import verify

REPAIR_REASON = "Finish an interrupted re-encryption"

CENSUS = """
SELECT col, under, count(*), array_agg(pk ORDER BY pk) FILTER (WHERE under = 'neither')
FROM (
    SELECT x.{pk}::text AS pk, c.col,
           CASE WHEN c.v IS NULL THEN 'null'
                WHEN rotation_runbook.try_decrypt(c.v, """ + NEW_KEY + """) IS NOT NULL THEN 'new'
                WHEN rotation_runbook.try_decrypt(c.v, """ + OLD_KEY + """) IS NOT NULL THEN 'old'
                ELSE 'neither' END AS under
    FROM {t} x, LATERAL (VALUES {values}) AS c(col, v)
) s
GROUP BY col, under
"""
CENSUS_SOURCE = ("every value of {table} tried with rotation_runbook.try_decrypt(<value>, <new>), then "
                 "(<value>, <old>), one pass: {columns}; keys loaded into the session temp table pg_temp.rotation_key "
                 "with COPY FROM STDIN, never statement parameters")


@dataclass(frozen=True)
class KeyCensus:
    """How many values of each column each key opens. `neither` lists every (row id, column) no key opens."""

    table: str
    pk: str
    new_key_fp: str
    old_key_fp: str
    counts: Mapping[str, Mapping[str, int]]          # column -> {new, old, neither, null}
    neither: tuple[tuple[str, str], ...] = field(default=())  # (pk value, column), every one

    def total(self, under: str) -> int:
        return sum(c.get(under, 0) for c in self.counts.values())

    @property
    def non_null(self) -> int:
        return sum(self.total(u) for u in ("new", "old", "neither"))

    @property
    def complete(self) -> bool:
        return self.total("new") == self.non_null

    def summary(self) -> str:
        return (f"{self.table}: {self.non_null:,} encrypted values: {self.total('new'):,} under the new key "
                f"{self.new_key_fp}, {self.total('old'):,} under the old key {self.old_key_fp}, "
                f"{self.total('neither'):,} under neither; {self.total('null'):,} NULL")

    def neither_lines(self) -> list[str]:
        return [f"{self.table} {self.pk}={pk} {column}" for pk, column in self.neither]


def key_census(conn: psycopg.Connection, new_key: Secret, old_key: Secret, spec: TableSpec) -> KeyCensus:
    """One pass over every row and column: each value is tried with the new key, then the old one."""
    values = sql.SQL(", ").join(sql.SQL("({}, x.{})").format(sql.Literal(c), sql.Identifier(c)) for c in spec.columns)
    query = sql.SQL(CENSUS).format(pk=sql.Identifier(spec.pk), t=sql.Identifier(spec.table), values=values)
    counts: dict[str, dict[str, int]] = {c: {"new": 0, "old": 0, "neither": 0, "null": 0} for c in spec.columns}
    neither: list[tuple[str, str]] = []
    load_keys(conn, {"new": new_key, "old": old_key})
    for column, under, n, pks in conn.execute(query).fetchall():
        counts[str(column)][str(under)] = int(n)
        neither += [(str(pk), str(column)) for pk in pks or ()]
    conn.commit()
    return KeyCensus(spec.table, spec.pk, new_key.fingerprint, old_key.fingerprint, counts, tuple(sorted(neither)))


def keys_for_repair(env_file: Path, credential: Credential) -> tuple[Secret, Secret]:
    """(old, new): through the recorded rotation state when a rotation is in progress (the new key in .env, the old
    one in the backup the state names), else the newest backup whose key differs from .env's (a rotation done by
    hand, as the runbook's SQL does)."""
    new = envfile.get_secret(env_file, credential.env)
    current = state.load(env_file, credential.type)
    wanted = current.current_fp if current is not None and current.in_progress else None
    for candidate in envfile.backups(env_file):
        value = envfile.read_env(candidate).get(credential.env, "")
        old = Secret(value)
        if value and old != new and (wanted is None or old.fingerprint == wanted):
            return old, new
    raise CheckFailed(f"no backup of {env_file.name} holds " + (f"the old key {wanted}" if wanted else
                      f"a key other than the current one ({new.fingerprint})")
                      + ": the old key is needed to finish the re-encryption")


class DecryptionTroubleshooting:
    """The runbook's "Decryption fails after key rotation", as steps: count per key, finish the re-encryption."""

    def __init__(self, deployment: Deployment, *, workers: int | None = None) -> None:
        self.deployment = deployment
        self.credential = deployment.config.credential(CREDENTIAL)
        self.specs: tuple[TableSpec, ...] = pgcrypto_specs(deployment.config)
        self.workers = workers
        self.censuses: list[KeyCensus] = []
        self.repair_error: str | None = None

    # --- diagnosis --------------------------------------------------------------------------------------------------
    def count_per_key(self, evidence: Evidence) -> None:
        """When: every encrypted value is tried with the new key, then the old one."""
        old, new = self._keys(evidence)
        self.censuses = []
        for spec in self.specs:
            with connect(self.deployment.dsn) as conn:
                census = key_census(conn, new, old, spec)
            self.censuses.append(census)
            evidence.record(f"values of {spec.table} per key", {
                "summary": census.summary(), "per column": census.counts, "under neither key": census.neither_lines()},
                source=CENSUS_SOURCE.format(table=spec.table, columns=", ".join(spec.columns)))

    def check_partly_rotated(self, evidence: Evidence) -> None:
        """Then: some values under the new key, the others under the old, none under neither."""
        new, old, neither = (self._total(u) for u in ("new", "old", "neither"))
        evidence.record("partly re-encrypted", {"new": new, "old": old, "neither": neither},
                        source="the counts per key above")
        require(new > 0 and old > 0 and neither == 0, self._summary())

    def check_all_new(self, evidence: Evidence) -> None:
        """Then: every value under the new key; none under the old or neither."""
        total, new = sum(c.non_null for c in self.censuses), self._total("new")
        if total:
            evidence.population("values under the new key", new, total, source="the counts per key above",
                                query=populations.new_key(self.deployment.dsn, self.specs, self._keys(evidence)[1]))
        require(bool(self.censuses) and new == total, self._summary())

    def check_names_unreadable(self, expected: Iterable[tuple[str, str, str]], evidence: Evidence) -> None:
        """Then: the values no key opens are exactly `expected`: (table, row id, column)."""
        found = sorted((c.table, pk, column) for c in self.censuses for pk, column in c.neither)
        wanted = sorted(expected)
        evidence.record("values under neither key", {"found": found, "expected": wanted},
                        source="the counts per key above")
        require(found == wanted, f"expected under neither key: {wanted}; found {found}; {self._summary()}")

    # --- repair -----------------------------------------------------------------------------------------------------
    def finish_reencryption(self, evidence: Evidence) -> None:
        """When: the interrupted re-encryption is finished with the old key from the backups: the DB key procedure's
        steps, resumed; the outcome is kept for the checks that follow (a failure here is what they examine)."""
        self.repair_error = None
        try:
            if self._rotation_in_progress():
                self._resume_rotation(evidence)
            else:
                self._finish_by_hand(evidence)
        except (CheckFailed, ReencryptionError) as exc:
            self.repair_error = str(exc)
        evidence.record("repair", {"outcome": self.repair_error or "every value verified under the new key"},
                        source="rotation.db_key.procedure.DbKeyRotation: generate_key (resumes), write_env, "
                               "reencrypt, verify_new_key, verify_old_key_dead, log")

    def check_repaired(self, evidence: Evidence) -> None:
        """Then: the repair verified every value under the new key."""
        evidence.record("repair outcome", {"error": self.repair_error}, source="the repair above")
        require(self.repair_error is None, f"the repair did not finish: {self.repair_error}")

    def check_repair_names(self, expected: Iterable[tuple[str, str, str]], evidence: Evidence) -> None:
        """Then: the repair stopped, naming each value in `expected` (table, row id, column) as under neither key."""
        spec_of = {s.table: s for s in self.specs}
        wanted = [f"{spec_of[t].pk}={pk} {column} (under neither key)" for t, pk, column in expected]
        evidence.record("repair outcome", {"error": self.repair_error, "must name": wanted}, source="the repair above")
        require(self.repair_error is not None, "the repair reported success over a value no key opens")
        missing = [w for w in wanted if w not in (self.repair_error or "")]
        require(not missing, f"the repair's error does not name {', '.join(missing)}: {self.repair_error}")

    def check_unfinished(self, evidence: Evidence) -> None:
        """Then: the re-encryption job is still open, so the next run takes it up again."""
        old, new = self._keys(evidence)
        open_jobs = []
        for spec in self.specs:
            with connect(self.deployment.dsn) as conn:
                job = find_job(conn, spec, old, new)
            open_jobs += [f"{spec.table} (job {job[0]})"] if job and job[1] == "running" else []
        evidence.record("re-encryption jobs still running", open_jobs,
                        source="rotation_runbook.reencrypt_job WHERE status = 'running', by key fingerprints")
        require(bool(open_jobs), "the re-encryption was marked finished although a value was not re-encrypted")

    # --- helpers ----------------------------------------------------------------------------------------------------
    def _keys(self, evidence: Evidence) -> tuple[Secret, Secret]:
        old, new = keys_for_repair(self.deployment.env_file, self.credential)
        evidence.register_secret(old)
        evidence.register_secret(new)
        return old, new

    def _rotation_in_progress(self) -> bool:
        current = state.load(self.deployment.env_file, self.credential.type)
        return current is not None and current.in_progress

    def _resume_rotation(self, evidence: Evidence) -> None:
        rotation = DbKeyRotation(self.deployment, reason=REPAIR_REASON, workers=self.workers)
        rotation.generate_key(evidence)
        rotation.write_env(evidence)
        rotation.reencrypt(evidence)
        rotation.verify_new_key(evidence)
        rotation.verify_old_key_dead(evidence)
        rotation.log(evidence)

    def _finish_by_hand(self, evidence: Evidence) -> None:
        """A rotation without recorded state (the runbook's SQL run by hand): re-run the re-encryption from the old
        key to .env's and prove it, as the runbook says ("re-run migration with old key")."""
        old, new = self._keys(evidence)
        for spec in self.specs:
            with connect(self.deployment.dsn) as conn:
                job_id, _ = start_or_resume_job(conn, spec, old, new, ranges=4, policy=self.credential.strength)
            reencrypt_table(self.deployment.dsn, old, new, spec=spec, workers=self.workers,
                            policy=self.credential.strength)
            with connect(self.deployment.dsn) as conn:
                check = verify(conn, spec, job_id, old, new)
            evidence.record(f"re-encryption of {spec.table} finished", {"summary": check.summary()},
                            source="rotation.db_key.reencrypt from the old key (backup) to the key in .env")
            require(check.ok, check.summary() + "; " + "; ".join(check.failure_lines()))

    def _total(self, under: str) -> int:
        return sum(c.total(under) for c in self.censuses)

    def _summary(self) -> str:
        return "; ".join(c.summary() for c in self.censuses) or "no values were counted"
