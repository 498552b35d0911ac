"""The application under rotation: stop, start, reload and restart by configured commands; health over HTTP.

Staging drives the app stand-in; live runs what the operator configures (e.g. `systemctl stop event-planning-api`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import requests

from rotation.core.config import AppSettings
from rotation.core.errors import RotationError
from rotation.core.state import write_private


class AppControlError(RotationError, RuntimeError):
    pass


AppCommands = AppSettings  # the configuration's [app] (with any --app-* option applied) is what is run


@dataclass(frozen=True)
class Health:
    status_code: int | None
    body: dict[str, object]

    @property
    def healthy(self) -> bool:
        return self.status_code == 200

    @property
    def answer(self) -> str:
        """The status code, or "no answer" when the endpoint did not answer at all."""
        return f"HTTP {self.status_code}" if self.status_code is not None else "HTTP no answer"

    def unhealthy_at(self, url: str) -> str:
        return f"not healthy at {url} ({self.answer})"


def run(command: str, *, timeout_s: float = 120) -> None:
    """Run a configured command without a shell; fail with its exit code and the tail of its stderr."""
    done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode:
        raise AppControlError(f"`{command}` exited {done.returncode}: {done.stderr.strip()[-300:]}")


def health(url: str, *, timeout_s: float = 5) -> Health:
    """GET the health URL; a refused connection is an unhealthy app, not an exception."""
    try:
        response = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        return Health(None, {"error": type(exc).__name__})
    try:
        body = response.json()
    except ValueError:
        body = {"text": response.text[:200]}
    return Health(response.status_code, body if isinstance(body, dict) else {"body": body})


def wait_for_health(url: str, *, healthy: bool = True, timeout_s: float = 30, interval_s: float = 0.2) -> Health:
    """Poll until the app reports the wanted state or the time is up; returns the last answer either way."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = health(url)
        if result.healthy == healthy or time.monotonic() >= deadline:
            return result
        time.sleep(interval_s)


def reload_or_restart(commands: AppCommands, restart: Callable[[], object] | None = None) -> str:
    """The runbook's `systemctl reload` (graceful, no downtime), or restart where reload is not supported. The CRM
    app reads .env only at start (see the CRM notes): when a reload leaves the process that was running before it
    (same start time), the app is restarted as well, so that it reads the new .env: by `restart` when given (a
    procedure's restart_app, which leaves the stop record), else by the configured restart command."""
    if commands.reload:
        before = process_started_at(commands)
        try:
            run(commands.reload)
            after = process_started_at(commands)
            if before is None or after is None or after.identity != before.identity:
                return "reload"
        except AppControlError:
            pass
    if restart is None:
        run(commands.restart)
    else:
        restart()
    return "restart"


@dataclass(frozen=True)
class ProcessStart:
    epoch_s: float  # when the app's process (systemd: the unit) became active, in seconds since the epoch
    source: str     # how it was found, for the evidence
    identity: str   # the raw reading (pid and start ticks, or the monotonic timestamp): equal for the same process


def process_started_at(commands: AppCommands) -> ProcessStart | None:
    """When the running app's process started: systemd's ActiveEnterTimestamp of the configured unit, else the start
    time of the process the configured pidfile names, else (health endpoint on this host) of the oldest process
    listening on its port. None when there is no such process."""
    if commands.systemd_unit:
        return _systemd_start(commands.systemd_unit)
    if commands.pidfile:
        return _pidfile_start(Path(commands.pidfile))
    return _listener_start(commands.health_url)


def start_source(commands: AppCommands) -> str:
    """Where process_started_at looks, in words (for the evidence and the plan)."""
    if commands.systemd_unit:
        return f"systemd unit {commands.systemd_unit} (ActiveEnterTimestamp)"
    if commands.pidfile:
        return f"the process in {commands.pidfile}"
    return f"the process listening on the port of {commands.health_url}"


def _systemd_start(unit: str) -> ProcessStart | None:
    """ActiveEnterTimestampMonotonic (microseconds of CLOCK_MONOTONIC), turned into wall-clock time here."""
    try:
        done = subprocess.run(["systemctl", "show", "--property=ActiveEnterTimestampMonotonic", "--value", unit],
                              capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    value = done.stdout.strip()
    if done.returncode or not value.isdigit() or int(value) == 0:
        return None
    since = time.clock_gettime(time.CLOCK_MONOTONIC) - int(value) / 1e6
    return ProcessStart(time.time() - since, f"systemctl show --property=ActiveEnterTimestampMonotonic {unit}",
                        f"{unit}@{value}")


def _pidfile_start(pidfile: Path) -> ProcessStart | None:
    """The start of the process the pidfile names."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return _proc_start(pid, f"{pidfile}: pid {pid}")


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")  # noqa: S104  (names, not a bind)


def _listener_start(health_url: str) -> ProcessStart | None:
    """The oldest process holding a listening socket on the health URL's port, when the URL is on this host: what
    serves /health is the app (Linux /proc only)."""
    parsed = urlparse(health_url)
    if parsed.hostname not in LOCAL_HOSTS:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    inodes = _listening_inodes(port)
    starts = [start for pid in _pids_holding(inodes)
              if (start := _proc_start(pid, f"pid {pid}, listening on port {port}")) is not None]
    return min(starts, key=lambda s: s.epoch_s) if starts else None


def _listening_inodes(port: int) -> set[str]:
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found


def _pids_holding(inodes: set[str]) -> list[int]:
    if not inodes:
        return []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    return [int(proc.name) for proc in Path("/proc").iterdir()
            if proc.name.isdigit() and wanted & set(_links(proc / "fd"))]


def _links(fd_dir: Path) -> list[str]:
    """Where a process's file descriptors point (those it lets us read; fds come and go while we look)."""
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return []
    links = []
    for fd in fds:
        try:
            links.append(os.readlink(fd))
        except OSError:
            continue
    return links


def _proc_start(pid: int, what: str) -> ProcessStart | None:
    """A process's start: /proc/<pid>/stat field 22 (clock ticks after boot), as wall-clock time."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = int(fields[19])  # field 22 of the whole line; fields here start at field 3
    since = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    return ProcessStart(time.time() - since, f"{what}, start time from /proc/{pid}/stat", f"{pid}@{ticks}")


# --- the app a run stopped ------------------------------------------------------------------------------------------
# A run that stops the app leaves a record beside .env until the app is started again and answers healthy, so a run
# killed in between (kill -9, power loss, a start command that died) leaves a trace the next run reads: it names the
# run that stopped the app and starts it again when that run's rotation is no longer in progress. One mechanism for
# every procedure (DB key, providers, emergency): `stop_app` / `start_app` / `stopped_by`.
STOP_RECORD = ".rotation-app-stopped.json"


@dataclass(frozen=True)
class StopRecord:
    run: str          # the run that stopped the app (its evidence run id)
    credential: str   # the credential whose rotation stopped it (its state decides whether the app may start)
    operator: str
    host: str
    pid: int
    at: str           # ISO 8601, UTC
    command: str

    def line(self) -> str:
        return (f"run {self.run} ({self.operator}, pid {self.pid} on {self.host}, rotating {self.credential}) "
                f"at {self.at}")


def stop_record_path(env_file: Path) -> Path:
    return env_file.with_name(STOP_RECORD)


def stopped_by(env_file: Path) -> StopRecord | None:
    """The run that stopped the app and has not seen it healthy since, if any."""
    path = stop_record_path(env_file)
    try:
        data = json.loads(path.read_text())
        return StopRecord(**{k: data[k] for k in StopRecord.__dataclass_fields__})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return StopRecord("unknown (unreadable record)", "unknown", "unknown", "unknown", 0, "unknown", "")


def stop_app(commands: AppCommands, env_file: Path, *, run_id: str, credential: str, operator: str) -> Health:
    """Record who stops the app (first: a kill during the stop leaves the record), run the stop command, wait until
    the health endpoint no longer answers healthy. Returns the last answer."""
    record = StopRecord(run_id, credential, operator, socket.gethostname(), os.getpid(),
                        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), commands.stop)
    write_private(stop_record_path(env_file), json.dumps(asdict(record), indent=2))
    run(commands.stop)
    return wait_for_health(commands.health_url, healthy=False, timeout_s=commands.health_timeout_s)


def start_app(commands: AppCommands, env_file: Path) -> Health:
    """Run the start command and wait for the app to answer healthy; only then is the stop record removed. A start
    command that fails raises AppControlError and leaves the record for the next run."""
    run(commands.start)
    result = wait_for_health(commands.health_url, timeout_s=commands.health_timeout_s)
    if result.healthy:
        stop_record_path(env_file).unlink(missing_ok=True)
    return result


def restart_app(commands: AppCommands, env_file: Path, *, run_id: str, credential: str, operator: str) -> Health:
    """A restart as stop_app then start_app, not the one restart command: a run killed between them (or a start
    command that dies) leaves the stop record, so the next run knows who stopped the app and starts it again."""
    stop_app(commands, env_file, run_id=run_id, credential=credential, operator=operator)
    return start_app(commands, env_file)
