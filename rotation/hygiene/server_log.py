"""Best Practices: no key in the PostgreSQL server log. A database key rotation runs, in full, while the server logs
every statement; afterwards neither key, nor any credential in .env, nor any other secret the whole session used
(every secret registered with the evidence), appears anywhere in the log, whole or as a fragment of 12 or more
characters, in any encoding the evidence leak scan knows (raw, hex, base64 at every alignment, URL, JSON and HTML
escaping).

The rotation is the scheduled scenario of the DB-key feature itself, each step run through its own step definition
(rotation_pytest.scheduled): the sequence is the feature's, defined nowhere else. This module only watches the log and
searches it; the runbook's sections are independent of one another, so it takes the rotation's two keys as values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence, require
from rotation.core.secret import Secret
from rotation.evidence.leaks import forms_of, scan_bytes
from rotation.hygiene.checks import Leak, credential_values

NEWLINE = b"\n"
STATEMENT_MARKERS = (b"statement: ", b"execute ")  # log_statement and log_min_duration_statement lines


@dataclass(frozen=True)
class LogWatch:
    """The server log, and how long it was when the scenario began: the statements after that are the rotation's."""

    path: Path
    offset: int


def watch(path: Path, evidence: Evidence) -> LogWatch:
    offset = path.stat().st_size
    evidence.record("server log watched", {"file": path.name, "from byte": offset}, source=f"stat {path}")
    return LogWatch(path, offset)


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


def require_no_key(log: LogWatch, deployment: Deployment, evidence: Evidence, *, old_key: Secret,
                   new_key: Secret) -> None:
    """Neither key of the rotation, nor any credential in .env, is in the server log; and the log did record the
    rotation's statements (else the search would prove nothing)."""
    values = {**session_secrets(evidence), "old database key": old_key, "new database key": new_key,
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
