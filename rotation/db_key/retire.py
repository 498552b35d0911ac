"""Retiring the old database encryption key (runbook section 1: "Remove the backup after 24 hours of successful
operation"), the database's part of rotation.core.retirement: the app is proven to run on the new key by the same
proof the rotation used (its probe reads a value under the new key, or its process started after .env changed), and
the completeness sweep is run again, now, with the old key: no value of any bytea or text column of any table of the
app's schemas may open with it. Only then are the suite's copies of the old key destroyed (or sealed to the recovery
key first, where backups of the database encrypted under it must stay readable: [retirement] escrow)."""

from __future__ import annotations

from rotation.core import app_proof
from rotation.core.database import connect
from rotation.core.proof import Evidence, require
from rotation.core.retirement import Retirement
from rotation.core.secret import Secret
from rotation.db_key import sweep
from rotation.evidence.leaks import scan_bytes


def holds(data: bytes, value: Secret) -> bool:
    """The leak scanner's test: the value whole, in any encoding it knows, or any 12-character part of it."""
    return bool(scan_bytes(data, [value.reveal()], label="retirement"))


class DbKeyRetirement(Retirement):
    noun = "key"

    def dead_text(self) -> str:
        return "the completeness sweep, run again now, finds no value that opens with the old key"

    def check_in_service(self, evidence: Evidence) -> None:
        self.check_healthy(evidence)
        found = self.need_found()
        require(self.dsn is not None, "the database is needed to prove the app's key: pass --dsn")
        proof = app_proof.prove_key(self.app, self.config, str(self.dsn), self.env_file, found.new)
        evidence.record("key loaded by the app", {"rotation": found.rotation_id, "key": found.new.fingerprint,
                                                  **proof.detail},
                        source=f"rotation.core.app_proof ({proof.method}), as the rotation proved it")
        require(proof.proven, proof.why)

    def check_old_value_dead(self, evidence: Evidence) -> None:
        found = self.need_found()
        with connect(str(self.dsn)) as conn:
            result = sweep.sweep(conn, found.old)
        evidence.record("completeness sweep, run again before retirement", {
            "rotation": found.rotation_id, "old key": found.old.fingerprint, **result.as_evidence(),
            "found": [h.line() for h in result.opened],
            "how": "re-run now by this retirement, not read from the rotation's evidence"},
            source=sweep.QUERY_SOURCE)
        require(not result.unreadable, "the sweep cannot read " + ", ".join(result.unreadable) + ": the old key "
                                       "cannot be retired while no claim can be made that it opens nothing")
        require(not result.opened, f"values still decrypt with the old key {found.old.fingerprint}: "
                + "; ".join(h.line() for h in result.opened) + ". Retiring it would lose them: rotate again")
