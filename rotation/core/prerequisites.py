"""The runbook's Prerequisites and the application's lifecycle, as every procedure uses them.

    back up the configuration    cp .env .env.backup.$(date +%Y%m%d), atomic and at mode 0600
    verify system health         the app's health endpoint answers healthy before anything changes
    stop, start, restart         the configured commands, each confirmed by the health endpoint

Each is safe to repeat, so a resumed rotation runs the same steps: the health check before a rotation that is
already in progress (the app may be stopped by the run that was interrupted) records that and does not fail.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rotation.core import app_control, app_proof, envfile, state
from rotation.core.config import Credential
from rotation.core.deployment import Deployment
from rotation.core.proof import CheckFailed, Evidence, require


def back_up(deployment: Deployment, evidence: Evidence) -> Path:
    path = envfile.backup(deployment.env_file)
    mode = envfile.file_mode(path)
    evidence.record("configuration backed up", {"backup": path.name, "mode": oct(mode)},
                    source=f"cp {deployment.env_file.name} {path.name} (temp file, fsync, rename; mode 0600)")
    require(mode == 0o600, f"the backup {path.name} has mode {oct(mode)}, not 0600")
    return path


def healthy_before(deployment: Deployment, credential: Credential | None, evidence: Evidence,
                   notify: Callable[[str], None] | None = None) -> None:
    """The app is healthy before the rotation, unless this credential's rotation is already in progress (a rerun
    after a crash): then the run that started it checked, and this one says so."""
    current = state.load(deployment.env_file, credential.type) if credential else None
    stopped = app_control.stopped_by(deployment.env_file)
    if current is not None and current.in_progress:
        evidence.record("resuming a rotation in progress", {
            "rotation": current.rotation_id, "last step done": current.step, "started": current.started_at,
            "app": f"stopped by {stopped.line()}, which did not start it again; this run takes the rotation up "
                   "with the app stopped" if stopped else "not stopped by a run"},
            source=f"{state.state_path(deployment.env_file).name}: the health check before this rotation "
                   f"was made by the run that started it; {app_control.STOP_RECORD}")
        return
    start_if_left_stopped(deployment, evidence, notify)
    result = app_control.health(deployment.app.health_url)
    evidence.record("health before", {"status": result.status_code, "body": result.body},
                    source=f"GET {deployment.app.health_url}")
    require(result.healthy, f"the app is not healthy before the rotation: {result.answer}")


def _in_progress(deployment: Deployment, credential: str) -> bool:
    current = state.load(deployment.env_file, credential)
    return current is not None and current.in_progress


def keeps_app_stopped(deployment: Deployment, credential: str) -> bool:
    """Whether the rotation that stopped the app needs it stopped still: the database key's, while in progress (its
    data may have moved to a key .env and the app disagree on until the run resumes). A provider rotation never
    does: at every step the app may run on what .env holds (the old credential stays valid until the app ran on the
    new one), so a restart its run did not finish is finished by starting the app."""
    known = next((c for c in deployment.config.credentials if c.type == credential), None)
    return _in_progress(deployment, credential) and (known is None or known.provider == "database")


def start_if_left_stopped(deployment: Deployment, evidence: Evidence,
                          notify: Callable[[str], None] | None = None) -> app_control.StopRecord | None:
    """Start the app an earlier run stopped and did not start again (saying so), unless that run's rotation needs
    it stopped still (keeps_app_stopped). Returns the record of a stop left in place, else None."""
    stopped = app_control.stopped_by(deployment.env_file)
    if stopped is None:
        return None
    if keeps_app_stopped(deployment, stopped.credential):
        return stopped
    start_stopped_app(deployment, stopped, evidence, notify)
    return None


def start_stopped_app(deployment: Deployment, stopped: app_control.StopRecord, evidence: Evidence,
                      notify: Callable[[str], None] | None = None) -> None:
    """An earlier run stopped the app and died before starting it (kill -9, a start command that was killed); its
    rotation is not in progress any more, so the app must run again on what .env holds: start it, saying so."""
    say = notify or (lambda line: print(line, file=sys.__stderr__, flush=True))
    say(f"the app was stopped by {stopped.line()}, which did not start it again: starting it")
    try:
        result = app_control.start_app(deployment.app, deployment.env_file)
    except app_control.AppControlError as exc:
        raise CheckFailed(f"the app was stopped by {stopped.line()}, which did not start it again, and "
                          f"`{deployment.app.start}` failed: {exc}") from None
    evidence.record("application started: an earlier run had stopped it", {
        "stopped by": stopped.line(), "health": result.status_code or "no answer"},
        source=f"{app_control.STOP_RECORD} beside {deployment.env_file.name}; {deployment.app.start}; "
               f"GET {deployment.app.health_url}")


def run_id_of(evidence: Evidence) -> str:
    """The evidence run id of this run (the recorder's journal names it), else this process."""
    meta = getattr(getattr(evidence, "journal", None), "meta", None)
    return str(getattr(meta, "run_id", "") or f"pid {os.getpid()}")


_STOP_ISSUED: dict[Path, float] = {}  # .env -> when this process last issued the app's stop command (epoch s)


def stop_issued_at(env_file: Path) -> float | None:
    """When this process last ran the stop command of the app behind `env_file`: where an outage begins."""
    return _STOP_ISSUED.get(env_file)


def stop_app(deployment: Deployment, evidence: Evidence, credential: Credential | None = None) -> None:
    """Stop the app and wait until its health endpoint no longer answers healthy. Stopping a stopped app is fine. A
    record beside .env names this run until the app is started healthy again (app_control.stop_app). The moment the
    stop command is issued is kept (stop_issued_at): the downtime window opens there."""
    issued = time.time()
    _STOP_ISSUED[deployment.env_file] = issued
    result = app_control.stop_app(deployment.app, deployment.env_file, run_id=run_id_of(evidence),
                                  credential=credential.type if credential else "none",
                                  operator=deployment.operator)
    evidence.record("application stopped", {
        "health": result.status_code or "no answer", "recorded in": app_control.STOP_RECORD,
        "stop command issued": dt.datetime.fromtimestamp(issued, dt.UTC).isoformat(timespec="milliseconds")},
        source=deployment.app.stop)
    require(not result.healthy, f"the app still answers healthy after `{deployment.app.stop}`")


def start_app(deployment: Deployment, evidence: Evidence) -> None:
    result = app_control.start_app(deployment.app, deployment.env_file)
    evidence.record("application started", {"command": deployment.app.start,
                                            "health": result.status_code or "no answer"},
                    source=deployment.app.start)


def restart_app(deployment: Deployment, evidence: Evidence) -> None:
    app_control.run(deployment.app.restart)
    evidence.record("application restarted", {"command": deployment.app.restart}, source=deployment.app.restart)


def healthy(deployment: Deployment, evidence: Evidence, *, when: str, reads_data: bool = False) -> None:
    """Wait for the app to answer healthy (up to the configured timeout). With `reads_data` (after a repair), also
    that the app reads its encrypted data with the key .env holds, where a probe is configured: the app's /health
    does not decrypt anything, so a key that opens nothing still answers healthy (see the CRM notes)."""
    result = app_control.wait_for_health(deployment.app.health_url, timeout_s=deployment.app.health_timeout_s)
    evidence.record(f"health {when}", {"status": result.status_code, "body": result.body},
                    source=f"GET {deployment.app.health_url}")
    require(result.healthy, f"the app is not healthy {when}: {result.answer}")
    if reads_data and app_proof.has_probe(deployment.app):
        database = next(c for c in deployment.config.credentials if c.provider == "database")
        key = envfile.get_secret(deployment.env_file, database.env)
        proof = app_proof.probe_key(deployment.app, deployment.config, deployment.dsn, key)
        evidence.record(f"the app reads its data {when}", proof.detail,
                        source=f"{deployment.app.probe_url or deployment.app.probe_command}, compared with the value "
                               f"under {database.env} in {deployment.env_file.name}")
        require(proof.proven, f"the app is not healthy {when}: it cannot read its data with the key in "
                              f"{deployment.env_file.name}: {proof.why}")
