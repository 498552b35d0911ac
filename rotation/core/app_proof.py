"""Proof that the running app uses the configuration .env holds now, with the app's real endpoints only.

The production app's /health says whether the app is healthy (`overall_status`), never which key or token it loaded
(see the CRM notes), and the app reads .env once, at start. So the proof is one of these, in this order, as the
deployment configuration's [app] table provides (the evidence names which one was used):

    probe           the app is made to read one encrypted value (probe_url or probe_command, {id} = a row id) and
                    its answer is compared, by SHA-256, with the value the database holds under the new key. Proves
                    the key itself; a wrong key shows as a wrong or failed answer.
    process start   the app's process started after .env last changed (systemd's ActiveEnterTimestamp of
                    systemd_unit, the start time of the process in pidfile, or, with neither and the health endpoint
                    on this host, of the process listening on its port). Proves the app read the .env that holds
                    the new value, since it reads .env only at start.

A run refuses to start when none is configured (`proof_method`), so it never fails after rotating for want of a
field the app does not have. Answers are digested at once; no plaintext reaches the evidence.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import shlex
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote, urlparse

import psycopg
import requests
from psycopg import sql

from rotation.core.app_control import LOCAL_HOSTS, AppCommands, process_started_at, start_source
from rotation.core.config import Config, EncryptedColumns
from rotation.core.database import connect, key_ref
from rotation.core.secret import Secret

PROBE_TIMEOUT_S = 15.0


class ProofMethod(StrEnum):
    """How a run proves which key the app runs on; the value is what the evidence shows."""

    PROBE_URL = "probe (URL)"
    PROBE_COMMAND = "probe (command)"
    SYSTEMD = "process start (systemd ActiveEnterTimestamp)"
    PIDFILE = "process start (pidfile)"
    LISTENER = "process start (the process serving the health endpoint)"
    NONE = "none"

    @property
    def is_probe(self) -> bool:
        """The app is made to read a value under the key (proves the key itself), not only to have restarted."""
        return self in (ProofMethod.PROBE_URL, ProofMethod.PROBE_COMMAND)


@dataclass(frozen=True)
class AppProof:
    method: ProofMethod         # which proof was used (for the evidence), or NONE
    proven: bool
    why: str                    # what was found, when not proven
    detail: dict[str, object]   # what the evidence records (no plaintext, no key)


def proof_method(app: AppCommands, *, key_probe: bool = True) -> ProofMethod | None:
    """The proof a run would use (None: none configured). Provider credentials have no probe: process start only."""
    if key_probe and app.probe_url:
        return ProofMethod.PROBE_URL
    if key_probe and app.probe_command:
        return ProofMethod.PROBE_COMMAND
    if app.systemd_unit:
        return ProofMethod.SYSTEMD
    if app.pidfile:
        return ProofMethod.PIDFILE
    if urlparse(app.health_url).hostname in LOCAL_HOSTS:
        return ProofMethod.LISTENER
    return None


def has_probe(app: AppCommands) -> bool:
    """The configuration lets the app be made to read a value under the key."""
    method = proof_method(app)
    return method is not None and method.is_probe


NO_PROOF = ("the configuration's [app] has no way to prove which key the running app uses (its health endpoint is "
            "not on this host): set probe_url or probe_command (reads one encrypted value), or systemd_unit or "
            "pidfile (the app's process started after .env changed); see rotation.toml")


def started_after(app: AppCommands, env_file: Path) -> AppProof:
    """The app's process started after .env last changed (it reads .env only at start)."""
    method = proof_method(app, key_probe=False) or ProofMethod.NONE
    changed = env_file.stat().st_mtime
    start = process_started_at(app)
    detail: dict[str, object] = {"proof": method, ".env changed": _iso(changed),
                                 "process started": _iso(start.epoch_s) if start else None,
                                 "read from": start.source if start else start_source(app)}
    if method is ProofMethod.NONE:
        return AppProof(method, False, NO_PROOF, detail)
    if start is None:
        return AppProof(method, False, f"the app's process start could not be read ({start_source(app)}): is the "
                                       "app running?", detail)
    if start.epoch_s <= changed:
        return AppProof(method, False, f"the app's process started at {_iso(start.epoch_s)}, before .env last changed "
                                       f"at {_iso(changed)}: it was not reloaded after the change (the app reads .env "
                                       "only at start: restart it)", detail)
    return AppProof(method, True, "", detail)


def probe_spec(app: AppCommands, config: Config) -> tuple[EncryptedColumns, str]:
    """The inventory entry and column the probe reads: probe_column, else the first pgcrypto column."""
    wanted = app.probe_column
    for entry in config.encrypted_data:
        for column in entry.columns:
            if (wanted is None and entry.kind == "pgcrypto") or wanted == f"{entry.table}.{column}":
                if entry.kind != "pgcrypto":
                    raise ValueError(f"probe_column {wanted} is a {entry.kind} column: the probe reads a pgcrypto "
                                     "column")
                return entry, column
    raise ValueError(f"probe_column {wanted} is not a column of the encrypted-data inventory" if wanted
                     else "the encrypted-data inventory has no pgcrypto column for the probe to read")


def probe_key(app: AppCommands, config: Config, dsn: str, key: Secret) -> AppProof:
    """The app reads one encrypted value through the probe; its answer equals the value under `key`."""
    method = proof_method(app) or ProofMethod.NONE
    entry, column = probe_spec(app, config)
    with connect(dsn, keys={"probe": key}) as conn:
        row = _first_value(conn, entry, column)
    detail: dict[str, object] = {"proof": method, "value read": f"{entry.table}.{column}",
                                 "probe": app.probe_url or app.probe_command, "key": key.fingerprint}
    if row is None:
        return AppProof(method, False, f"{entry.table}.{column} holds no value for the probe to read", detail)
    row_id, expected = row
    detail[entry.key] = row_id
    if expected is None:
        return AppProof(method, False, f"{entry.table}.{column} {entry.key}={row_id} does not open with the key "
                                       f"{key.fingerprint}: there is nothing the app's answer could match", detail)
    answer, status = _ask(app, row_id)
    detail |= {"answer": status, "answer length": len(answer) if answer is not None else None}
    if answer is None:
        return AppProof(method, False, f"the app could not read {entry.table}.{column} {entry.key}={row_id}: {status}",
                        detail)
    matches = hmac.compare_digest(hashlib.sha256(answer.encode()).digest(), bytes(expected))
    detail["matches the value under the key"] = matches
    if not matches:
        return AppProof(method, False, f"the app's answer for {entry.table}.{column} {entry.key}={row_id} is not the "
                                       f"value under the key {key.fingerprint}: the app does not run on it", detail)
    return AppProof(method, True, "", detail)


def prove_key(app: AppCommands, config: Config, dsn: str, env_file: Path, key: Secret) -> AppProof:
    """The app runs on `key`: by probe when one is configured, else by its process start."""
    return probe_key(app, config, dsn, key) if has_probe(app) else started_after(app, env_file)


def _first_value(conn: psycopg.Connection, entry: EncryptedColumns, column: str) -> tuple[str, bytes | None] | None:
    """The first row with a value in the column: its id and the SHA-256 of its plaintext under the loaded key."""
    found = conn.execute(sql.SQL(
        "SELECT {pk}::text, digest(rotation_runbook.try_decrypt({c}, " + key_ref("probe") + "), 'sha256') "
        "FROM {t} WHERE {c} IS NOT NULL ORDER BY {pk} LIMIT 1").format(
            pk=sql.Identifier(entry.key), c=sql.Identifier(column), t=sql.Identifier(entry.table))).fetchone()
    conn.commit()
    return (str(found[0]), None if found[1] is None else bytes(found[1])) if found else None


def _ask(app: AppCommands, row_id: str) -> tuple[str | None, str]:
    """The probe's answer (None when it failed) and a short account of how it answered."""
    if app.probe_url:
        url = app.probe_url.replace("{id}", quote(row_id, safe=""))
        try:
            response = requests.get(url, timeout=PROBE_TIMEOUT_S)
        except requests.RequestException as exc:
            return None, f"GET failed: {type(exc).__name__}"
        if response.status_code != 200:
            return None, f"HTTP {response.status_code}"
        return _field(response.text, app.probe_field), "HTTP 200"
    command = [part.replace("{id}", row_id) for part in shlex.split(app.probe_command or "")]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"command failed: {type(exc).__name__}"
    if done.returncode:
        return None, f"command exited {done.returncode}"
    return _field(done.stdout, app.probe_field), "exit 0"


def _field(text: str, path: str | None) -> str | None:
    if not path:
        return text.strip()
    try:
        value: object = json.loads(text)
    except ValueError:
        return None
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="milliseconds")
