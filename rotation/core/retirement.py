"""Retiring an old credential (NIST SP 800-57: deactivated -> destroyed): after a quiet period with the app healthy
on the new value, every copy of the old value the suite made is destroyed, or first sealed to the recovery key where
database backups must stay readable (rotation.core.escrow), and the destruction is recorded: which files, their
SHA-256 before, when, by whom.

The copies the suite makes live beside .env: its backups (`.env.backup.YYYYMMDD[.N]`), the PENDING files
(`.rotation-pending.<type>`), the state file (fingerprints only, but scanned all the same) and the temporary files an
interrupted atomic write may leave (`.<name>.<random>[.tmp]`). Copies made outside the suite (filesystem snapshots,
off-host backups of the host) are not within its reach: the record says so.

Each step is a method, run in order by `rotation retire` (rotation/cli/retire.py), which records it as one scenario
of a signed run folder. A section's subclass says how the app is proven to run on the new value and how the old
value is proven to open nothing any more (rotation.db_key.retire, rotation.providers.retire).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rotation.core import app_control, envfile, escrow, state
from rotation.core.clock import utc_now
from rotation.core.config import Config, Credential
from rotation.core.proof import CheckFailed, Evidence, require
from rotation.core.secret import Secret

ESCROW_DIR = ".rotation-escrow"
Holds = Callable[[bytes, Secret], bool]  # does this file content hold the value (whole or any 12-character part)?


class NothingToRetire(CheckFailed):
    """The rotation is finished and no file the suite keeps holds its old value: retired already."""


@dataclass(frozen=True)
class Copy:
    """A file the suite made that holds the old value."""

    path: Path
    kind: str
    sha256: str
    size: int
    modified: dt.datetime

    def as_evidence(self) -> dict[str, object]:
        return {"file": str(self.path), "kind": self.kind, "sha256 before": self.sha256, "bytes": self.size,
                "last modified": _iso(self.modified)}


def suite_files(env_file: Path) -> list[tuple[Path, str]]:
    """Every file beside .env the suite writes, with what it is (the .env itself is not among them)."""
    folder, name = env_file.parent, env_file.name
    found: list[tuple[Path, str]] = [(p, ".env backup") for p in folder.glob(f"{name}.backup.*")]
    found += [(p, "pending file") for p in folder.glob(".rotation-pending.*")]
    found += [(p, "state file") for p in folder.glob(f"{state.STATE_FILE}*")]
    found += [(p, "temporary file of an interrupted write") for p in folder.glob(f".{name}.*")]
    found += [(p, "temporary file of an interrupted write") for p in folder.glob(f".{state.STATE_FILE}.*")]
    found += [(p, "temporary file of an interrupted write") for p in folder.glob(".rotation-pending.*.*")]
    return sorted({p: kind for p, kind in found if p.is_file() and not p.is_symlink()}.items())


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copies_of(env_file: Path, value: Secret, holds: Holds) -> list[Copy]:
    out = []
    for path, kind in suite_files(env_file):
        data = path.read_bytes()
        if holds(data, value):
            st = path.stat()
            out.append(Copy(path, kind, hashlib.sha256(data).hexdigest(), st.st_size,
                            dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)))
    return out


def destroy(path: Path) -> None:
    """Overwrite the file's bytes with zeros, fsync, unlink and fsync the folder. On a copy-on-write or journaling
    filesystem the old blocks may survive the overwrite; the unlink is what the record claims."""
    size = path.stat().st_size
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, bytes(size))
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def escrow_dir(env_file: Path, config: Config) -> Path:
    chosen = config.retirement.escrow_dir
    return Path(chosen) if chosen else env_file.with_name(ESCROW_DIR)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def span(period: dt.timedelta) -> str:
    """A quiet period as people write it: "24 h", "90 min", "0 s"."""
    seconds = period.total_seconds()
    if seconds and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds and seconds % 60 == 0 else f"{seconds:g} s"


@dataclass
class Found:
    """What the first step established; the later steps work on it."""

    rotation_id: str
    old: Secret
    new: Secret
    finished_at: dt.datetime
    copies: list[Copy]


class Retirement:
    """The retirement of one credential's old value, as steps (see the module docstring). Subclasses implement
    `check_in_service` and `check_old_value_dead`."""

    noun = "value"

    def __init__(self, credential: Credential, config: Config, env_file: Path, app: app_control.AppCommands, *,
                 dsn: str | None, quiet_period: dt.timedelta, holds: Holds, performed_by: str,
                 now: Callable[[], dt.datetime] = utc_now) -> None:
        self.credential, self.config, self.env_file, self.app, self.dsn = credential, config, env_file, app, dsn
        self.quiet_period, self.holds, self.performed_by, self.now = quiet_period, holds, performed_by, now
        self.found: Found | None = None
        self.escrowed: escrow.Escrow | None = None

    # --- what the steps share -------------------------------------------------------------------------------------
    @property
    def escrows(self) -> bool:
        return self.credential.type in self.config.retirement.escrow

    def steps(self) -> list[tuple[str, str, Callable[[Evidence], None]]]:
        """(keyword, text, method) in order, in the runbook's words."""
        label, noun = self.credential.label, self.noun
        out: list[tuple[str, str, Callable[[Evidence], None]]] = [
            ("Given", f"the rotation of the {label} finished and the old {noun} is found in the copies the suite "
                      "made", self.find_old),
            ("And", f"the quiet period has passed since the new {noun} went into service", self.check_quiet_period),
            ("And", f"the application is healthy on the new {noun}", self.check_in_service),
            ("And", self.dead_text(), self.check_old_value_dead),
        ]
        if self.escrows:
            out.append(("When", f"the old {noun} is sealed to the recovery key with its destruction date",
                        self.seal_old))
        out += [
            ("When", f"every copy of the old {noun} the suite made is destroyed", self.destroy_copies),
            ("Then", f"no file the suite keeps holds the old {noun}", self.check_no_copy_left),
            ("And", f"escrows of the {label} past their destruction date are destroyed", self.destroy_due_escrows),
        ]
        return out

    def dead_text(self) -> str:
        return f"the old {self.noun} opens nothing any more"

    def need_found(self) -> Found:
        if self.found is None:
            raise CheckFailed("the old value was not established (the first step did not pass)")
        return self.found

    # --- the steps ------------------------------------------------------------------------------------------------
    def find_old(self, evidence: Evidence) -> None:
        """The state names the rotation: finished (PENDING promoted), .env holds its CURRENT value, and its PREVIOUS
        value is in a backup (or pending file) the suite made."""
        progress = state.load(self.env_file, self.credential.type)
        require(progress is not None, f"no rotation of the {self.credential.label} is recorded beside "
                                      f"{self.env_file.name} ({state.STATE_FILE}): nothing to retire")
        assert progress is not None
        require(not progress.in_progress, f"rotation {progress.rotation_id} of the {self.credential.label} is still "
                                          f"in progress (step '{progress.step}'): finish it first")
        require(progress.previous_fp is not None, f"rotation {progress.rotation_id} records no previous value")
        new = envfile.get_secret(self.env_file, self.credential.env)
        require(new.fingerprint == progress.current_fp,
                f"{self.env_file.name} holds {self.credential.env} {new.fingerprint}, not the value rotation "
                f"{progress.rotation_id} put in service ({progress.current_fp}): the app is not on the new value")
        old = self._locate(progress.previous_fp or "")
        evidence.register_secret(new)
        if old is None:
            raise NothingToRetire(f"no file the suite keeps holds the old {self.noun} {progress.previous_fp}: it is "
                              "retired already (see the earlier retirement record), or was removed by hand")
        evidence.register_secret(old)
        copies = copies_of(self.env_file, old, self.holds)
        self.found = Found(progress.rotation_id, old, new, dt.datetime.fromisoformat(progress.updated_at), copies)
        evidence.record("old value to retire", {
            "rotation": progress.rotation_id, "credential": self.credential.type, "old": old.fingerprint,
            "in service": new.fingerprint, "rotation finished": progress.updated_at,
            "copies found": [c.as_evidence() for c in copies]},
            source=f"{state.STATE_FILE} (rotation {progress.rotation_id}); {self.credential.env} in "
                   f"{self.env_file.name}; every file the suite writes beside it, read and searched for the old "
                   "value and any 12-character part of it")

    def _locate(self, fingerprint: str) -> Secret | None:
        for path, _ in suite_files(self.env_file):
            for value in _values(path, self.credential.env):
                if value.fingerprint == fingerprint:
                    return value
        return None

    def check_quiet_period(self, evidence: Evidence) -> None:
        found = self.need_found()
        due = found.finished_at + self.quiet_period
        now = self.now()
        evidence.record("quiet period", {"rotation finished": _iso(found.finished_at),
                                         "quiet period": span(self.quiet_period), "retirement allowed from": _iso(due),
                                         "now": _iso(now), "configured": span(self.config.retirement.quiet_period)},
                        source=f"{state.STATE_FILE} updated_at of the finished rotation; [retirement] "
                               f"quiet_period_hours in {self.config.source}, or --quiet-period")
        require(now >= due, f"the quiet period ({span(self.quiet_period)}) has not passed: rotation "
                            f"{found.rotation_id} finished {_iso(found.finished_at)}; retire from {_iso(due)}")

    def check_in_service(self, evidence: Evidence) -> None:
        raise NotImplementedError

    def check_old_value_dead(self, evidence: Evidence) -> None:
        raise NotImplementedError

    def check_healthy(self, evidence: Evidence) -> None:
        answer = app_control.health(self.app.health_url)
        evidence.record("application health", {"url": self.app.health_url, "status": answer.status_code,
                                               "healthy": answer.healthy,
                                               "checked": "now, once: this tool does not watch the app through the "
                                                          "quiet period (monitoring does)"},
                        source=f"GET {self.app.health_url}")
        require(answer.healthy, f"the app is not healthy ({self.app.health_url} answered {answer.status_code}): "
                                "an old value is retired only while the app runs well on the new one")

    def seal_old(self, evidence: Evidence) -> None:
        found = self.need_found()
        settings = self.config.retirement
        recipient = escrow.load_recipient(Path(str(settings.escrow_public_key)))
        now = self.now()
        record = escrow.seal(found.old, recipient, credential=self.credential.type, sealed_at=now,
                             destroy_after=now + dt.timedelta(days=settings.escrow_days))
        self.escrowed = escrow.write(escrow_dir(self.env_file, self.config), record)
        require(not self.holds(self.escrowed.path.read_bytes(), found.old),
                f"the escrow {self.escrowed.path} holds the old value in clear: not sealed")
        evidence.record("escrow", {**self.escrowed.as_evidence(), "algorithm": record["algorithm"],
                                   "sha256": sha256_file(self.escrowed.path)},
                        source=f"rotation.core.escrow.seal to {settings.escrow_public_key} "
                               f"([retirement] escrow_public_key in {self.config.source}); the file read back and "
                               "searched for the value in clear")

    def destroy_copies(self, evidence: Evidence) -> None:
        found = self.need_found()
        busy = self._needed_by_other_rotations([c.path for c in found.copies])
        require(not busy, "a rotation in progress still needs " + "; ".join(busy) + ": finish it, then retire")
        destroyed = []
        for copy in found.copies:
            if sha256_file(copy.path) != copy.sha256:
                raise CheckFailed(f"{copy.path} changed since it was read ({copy.sha256[:16]}...): run again")
            others = [k for k, v in envfile.read_env(copy.path).items() if k != self.credential.env and v] \
                if copy.kind == ".env backup" else []
            also = self._other_old_values(copy.path)
            destroy(copy.path)
            destroyed.append({**copy.as_evidence(), "destroyed at": _iso(self.now()),
                              "other settings it also held": others, "also retired": also})
            # journaled at once: a run killed between two files leaves which it destroyed
            evidence.record("file destroyed", destroyed[-1], source="overwritten with zeros, fsynced, unlinked")
        evidence.record("retirement record", {
            "credential": self.credential.type, "retired value": found.old.fingerprint,
            "rotation": found.rotation_id, "files destroyed": destroyed,
            "escrow": self.escrowed.as_evidence() if self.escrowed else "none (not configured for this credential)",
            "when": _iso(self.now()), "by": self.performed_by,
            "not covered": "copies made outside this suite (filesystem snapshots, host backups) and the blocks of "
                           "an overwritten file on a copy-on-write filesystem"},
            source="each file overwritten with zeros, fsynced, unlinked, its folder fsynced")

    def _other_old_values(self, path: Path) -> list[dict[str, str]]:
        """Other credentials whose finished rotation's old value this file holds: destroying it retires them too,
        and the record says so (audit-trail matches them like the retired value itself)."""
        out = []
        for other in self.config.credentials:
            progress = state.load(self.env_file, other.type)
            if other.type == self.credential.type or progress is None or not progress.previous_fp:
                continue
            if any(v.fingerprint == progress.previous_fp for v in _values(path, other.env)):
                out.append({"credential": other.type, "retired value": progress.previous_fp,
                            "rotation": progress.rotation_id})
        return out

    def _needed_by_other_rotations(self, paths: list[Path]) -> list[str]:
        wanted = {p.resolve() for p in paths}
        return [f"{Path(s.backup).name} (rotation {s.rotation_id} of {s.credential}, step '{s.step}')"
                for s in state.load_all(self.env_file).values()
                if s.in_progress and s.backup and Path(s.backup).resolve() in wanted]

    def check_no_copy_left(self, evidence: Evidence) -> None:
        found = self.need_found()
        left = copies_of(self.env_file, found.old, self.holds)
        in_env = self.holds(self.env_file.read_bytes(), found.old)
        evidence.record("copies left", {"files the suite keeps searched": [str(p) for p, _ in
                                                                           suite_files(self.env_file)],
                                        "holding the old value": [str(c.path) for c in left],
                                        f"{self.env_file.name} holds it": in_env},
                        source="every file the suite writes beside .env, and .env, searched for the old value and "
                               "any 12-character part of it")
        require(not left and not in_env, f"the old {self.noun} {found.old.fingerprint} is still in "
                + ", ".join([str(c.path) for c in left] + ([str(self.env_file)] if in_env else [])))

    def destroy_due_escrows(self, evidence: Evidence) -> None:
        now = self.now()
        folder = escrow_dir(self.env_file, self.config)
        mine = [e for e in escrow.all_in(folder) if e.credential == self.credential.type]
        due = [e for e in mine if e.due(now)]
        for item in due:
            digest = sha256_file(item.path)
            destroy(item.path)
            evidence.record("escrow destroyed", {**item.as_evidence(), "sha256 before": digest,
                                                 "destroyed at": _iso(now), "by": self.performed_by},
                            source="past its destruction date: overwritten with zeros, fsynced, unlinked")
        evidence.record("escrows kept", [e.as_evidence() for e in mine if not e.due(now)],
                        source=f"{folder}: escrows of {self.credential.type} not yet due")


@dataclass(frozen=True)
class Awaiting:
    """An old value a finished rotation left in the suite's files, not yet retired."""

    credential: str
    old: str  # fingerprint
    rotation_id: str
    finished_at: dt.datetime
    retire_from: dt.datetime
    files: tuple[str, ...]

    def due(self, now: dt.datetime) -> bool:
        return now >= self.retire_from


def awaiting(env_file: Path, config: Config) -> list[Awaiting]:
    """Every credential whose finished rotation's old value is still in a file the suite keeps beside .env (found by
    its fingerprint; no value leaves this function)."""
    out = []
    for credential in config.credentials:
        progress = state.load(env_file, credential.type)
        if progress is None or progress.in_progress or not progress.previous_fp:
            continue
        files = tuple(str(path) for path, _ in suite_files(env_file)
                      if any(v.fingerprint == progress.previous_fp for v in _values(path, credential.env)))
        if files:
            finished = dt.datetime.fromisoformat(progress.updated_at)
            out.append(Awaiting(credential.type, progress.previous_fp, progress.rotation_id, finished,
                                finished + config.retirement.quiet_period, files))
    return out


def _values(path: Path, env_name: str) -> list[Secret]:
    """The credential's value in a .env-format file, or the whole content of a pending file."""
    try:
        if path.name.startswith(".rotation-pending."):
            text = path.read_text().strip()
            return [Secret(text)] if text else []
        value = envfile.read_env(path).get(env_name)
    except (OSError, UnicodeDecodeError, envfile.EnvFileError):
        return []
    return [Secret(value)] if value else []
