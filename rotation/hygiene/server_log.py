"""Best Practices: no key in the PostgreSQL server log. A database key rotation runs, in full, while the server logs
every statement; afterwards neither key, nor any credential in .env, nor any other secret the whole session used
(every secret registered with the evidence), appears anywhere in the log, whole or as a fragment of 12 or more
characters, in any encoding the evidence leak scan knows (raw, hex, base64 at every alignment, URL, JSON and HTML
escaping).

The rotation is the DB-key procedure itself (`rotation.db_key.procedure.DbKeyRotation`), run step by step in the
order of its feature. The runbook's sections are independent of one another, so this module does not import it:
it names the steps it calls in `KeyRotation`, which DbKeyRotation satisfies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rotation.core import prerequisites
from rotation.core.config import Credential
from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence, require
from rotation.core.secret import Secret
from rotation.evidence.leaks import forms_of, scan_bytes
from rotation.hygiene.checks import Leak, credential_values

NEWLINE = b"\n"
STATEMENT_MARKERS = (b"statement: ", b"execute ")  # log_statement and log_min_duration_statement lines


class KeyRotation(Protocol):
    """The steps of the database key rotation this check runs (rotation.db_key.procedure.DbKeyRotation)."""

    @property
    def old_key(self) -> Secret: ...

    @property
    def new_key(self) -> Secret: ...

    def prepare(self, evidence: Evidence) -> None: ...

    def generate_key(self, evidence: Evidence) -> None: ...

    def write_env(self, evidence: Evidence) -> None: ...

    def check_env(self, evidence: Evidence) -> None: ...

    def reencrypt(self, evidence: Evidence) -> None: ...

    def verify_new_key(self, evidence: Evidence) -> None: ...

    def verify_old_key_dead(self, evidence: Evidence) -> None: ...

    def log(self, evidence: Evidence) -> None: ...

    def check_logged(self, evidence: Evidence) -> None: ...

    def check_app_key(self, evidence: Evidence) -> None: ...


@dataclass(frozen=True)
class LogWatch:
    """The server log, and how long it was when the scenario began: the statements after that are the rotation's."""

    path: Path
    offset: int


def watch(path: Path, evidence: Evidence) -> LogWatch:
    offset = path.stat().st_size
    evidence.record("server log watched", {"file": path.name, "from byte": offset}, source=f"stat {path}")
    return LogWatch(path, offset)


def rotate_db_key(rotation: KeyRotation, deployment: Deployment, credential: Credential, evidence: Evidence) -> None:
    """Runbook section 1, end to end: the scheduled rotation's steps in its feature's order, each the procedure's own
    method, with the runbook's prerequisites and the application's lifecycle around them."""
    rotation.prepare(evidence)  # the checks before any change, the run lock and the suite's schema
    prerequisites.back_up(deployment, evidence)
    prerequisites.healthy_before(deployment, credential, evidence)
    rotation.generate_key(evidence)
    evidence.register_secret(rotation.old_key)
    evidence.register_secret(rotation.new_key)
    prerequisites.stop_app(deployment, evidence, credential)
    rotation.write_env(evidence)
    rotation.check_env(evidence)
    rotation.reencrypt(evidence)
    rotation.verify_new_key(evidence)
    rotation.verify_old_key_dead(evidence)
    rotation.log(evidence)
    rotation.check_logged(evidence)
    prerequisites.start_app(deployment, evidence)
    prerequisites.healthy(deployment, evidence, when="after the rotation")
    rotation.check_app_key(evidence)


def secrets_in_file(path: Path, values: Mapping[str, Secret]) -> list[Leak]:
    """Which secrets occur in a file, whole or in part, in any encoding, by name and fingerprint, with the first line
    numbers (the line of the first whole form; a fragment is named without one)."""
    data = path.read_bytes()
    names = list(values)
    found = scan_bytes(data, [values[n].reveal() for n in names], label=path.name)
    by_fp = {values[n].fingerprint: n for n in names}
    leaks = []
    for leak in found:
        name = by_fp.get(leak.secret_fingerprint, "a secret")
        at = next((data.find(p) for p in forms_of(values[name].reveal()) if p in data), -1) if name in values else -1
        where = f"line {data.count(NEWLINE, 0, at) + 1}" if at >= 0 else "a fragment of 12+ characters"
        leaks.append(Leak(name, leak.secret_fingerprint, f"{path.name} {where} ({leak.form})"))
    return leaks


def session_secrets(evidence: Evidence) -> dict[str, Secret]:
    """Every secret registered with the evidence during the whole session (the recorder keeps them in memory)."""
    registered = getattr(evidence, "secrets", ())
    return {f"session secret {Secret(v).fingerprint}": Secret(v) for v in registered if isinstance(v, str) and v}


def statements_since(log: LogWatch) -> int:
    with log.path.open("rb") as f:
        f.seek(log.offset)
        return sum(1 for line in f if any(marker in line for marker in STATEMENT_MARKERS))


def require_no_key(log: LogWatch, rotation: KeyRotation, deployment: Deployment, evidence: Evidence) -> None:
    """Neither key of the rotation, nor any credential in .env, is in the server log; and the log did record the
    rotation's statements (else the search would prove nothing)."""
    values = {**session_secrets(evidence), "old database key": rotation.old_key, "new database key": rotation.new_key,
              **{c.env: v for c, v in credential_values(deployment.env_file, deployment.config).items()}}
    leaks = secrets_in_file(log.path, values)
    statements = statements_since(log)
    evidence.record("server log searched", {"file": log.path.name, "bytes": log.path.stat().st_size,
                                            "statements logged during the scenario": statements,
                                            "secrets looked for": {k: v.fingerprint for k, v in values.items()},
                                            "found": [leak.line() for leak in leaks]},
                    source=f"{log.path}: every byte searched for each secret, whole and as any fragment of 12 or "
                           "more characters, in every encoding of rotation.evidence.leaks; the secrets: the rotation's "
                           "keys, every credential in .env and every secret registered with the evidence this session")
    require(statements > 0, "the server log recorded no statement during the rotation: the search would prove nothing")
    require(not leaks, "key in the PostgreSQL server log: " + "; ".join(leak.line() for leak in leaks))
