"""The emergency run's own record of the incident: when each credential's procedure began, when the compromised
credential was proven dead (revoked), when the app was healthy again on the new one (restored), the access review's
findings and the notification's delivery. Times come from the clock at the moment each step finished; nothing is typed
in by hand. A resumed rotation takes its start and its revocation from the rotation state the interrupted run wrote.
Holds fingerprints only, never a credential.

One incident, one record: the record is kept in a file beside .env (LEDGER_FILE, mode 0600), written at every event,
so runs with the same change id continue one incident: one timeline with the original times, each credential's
outage from the first stop (in whichever run) to healthy, and a credential finished by an earlier run is never
rotated again (its scenario is skipped, saying so) while the record keeps naming the original compromised credential.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from rotation.core.clock import utc_now
from rotation.core.errors import RotationError

if TYPE_CHECKING:  # the access review records into the incident; the incident only holds its result
    from rotation.emergency.access_review import ReviewResult


@dataclass(frozen=True)
class Event:
    at: dt.datetime
    what: str
    credential: str | None = None


@dataclass
class CredentialOutcome:
    credential_type: str
    started_at: dt.datetime
    old_fp: str
    new_fp: str | None = None
    revoked_at: dt.datetime | None = None
    outage_from: dt.datetime | None = None
    restored_at: dt.datetime | None = None
    rejection: str | None = None
    rotation_id: str | None = None  # the rotation state's id: the same in every run that worked on this rotation
    resumed: bool = False
    detected_at: dt.datetime | None = None  # --detected-at: the clock of time-to-revoke starts there when given
    finished: bool = False  # logged: nothing is left to do for this credential
    waiting: str | None = None  # why the run stopped waiting for the operator (the provider's last answer)

    @property
    def time_to_revoke(self) -> dt.timedelta | None:
        return self.revoked_at - (self.detected_at or self.started_at) if self.revoked_at else None

    @property
    def status(self) -> str:
        """As the notification and the report say it: no stronger than what the run saw."""
        if self.finished:
            return "revoked and replaced"
        if self.waiting and not self.revoked_at:
            return "waiting for the operator to revoke it at the provider's console"
        if self.revoked_at and self.restored_at:
            return "revoked and replaced (not yet logged)"
        if self.revoked_at:
            return "revoked; the app is not yet healthy on the replacement (failed or in progress)"
        return "failed: not revoked yet"

    @property
    def time_to_restore(self) -> dt.timedelta | None:
        """From the moment the app lost a working credential (revocation or stop) until it was healthy again."""
        start = self.outage_from or self.revoked_at
        return self.restored_at - start if self.restored_at and start else None

    def as_evidence(self) -> dict[str, object]:
        return {"credential_type": self.credential_type, "started_at": iso(self.started_at),
                "revoked_at": iso(self.revoked_at), "restored_at": iso(self.restored_at),
                "time_to_revoke_s": seconds(self.time_to_revoke), "time_to_restore_s": seconds(self.time_to_restore),
                "old_credential": self.old_fp, "new_credential": self.new_fp,
                "old_credential_rejection": self.rejection, "rotation_id": self.rotation_id,
                "resumed": self.resumed, "status": self.status,
                "time_to_revoke_from": "--detected-at" if self.detected_at else "the start of its rotation",
                "detected_at": iso(self.detected_at), "outage_from": iso(self.outage_from)}

    def to_json(self) -> dict[str, object]:
        """The fields, and what a reader wants without computing it (ignored when read back)."""
        return {k: iso(v) if isinstance(v, dt.datetime) else v for k, v in asdict(self).items()} | {
            "status": self.status, "old_credential": self.old_fp, "time_to_revoke_s": seconds(self.time_to_revoke),
            "time_to_restore_s": seconds(self.time_to_restore),
            "time_to_revoke_from": "--detected-at" if self.detected_at else "the start of its rotation"}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> CredentialOutcome:
        moments = {"started_at", "revoked_at", "outage_from", "restored_at", "detected_at"}
        names = {f.name for f in fields(cls)}
        return cls(**{k: parse_iso(str(v)) if k in moments and v else v  # type: ignore[arg-type]
                      for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Delivery:
    """An accepted notification: message id, envelope recipients, when, and the body's digest."""

    message_id: str
    recipients: tuple[str, ...]
    accepted_at: dt.datetime
    body_sha256: str
    relay: str

    def as_evidence(self) -> dict[str, object]:
        return {"message_id": self.message_id, "recipients": list(self.recipients),
                "accepted_at": iso(self.accepted_at), "relay": self.relay, "body_sha256": self.body_sha256}


@dataclass
class IncidentRecord:
    """One per emergency run: each scenario adds what it did, when."""

    started_at: dt.datetime = field(default_factory=utc_now)
    events: list[Event] = field(default_factory=list)
    outcomes: dict[str, CredentialOutcome] = field(default_factory=dict)
    review: ReviewResult | None = None
    notification: Delivery | None = None
    notification_error: str | None = None
    report_document: str | None = None  # the incident report's file name in the run folder, once written
    change_id: str | None = None
    detected_at: dt.datetime | None = None
    compromised: tuple[str, ...] = ()  # the credentials the first run was told are compromised
    runs: list[dict[str, object]] = field(default_factory=list)  # every run of this incident: when, by which process
    path: Path | None = None  # the ledger file; None: this record lives only in this run

    def note(self, what: str, credential: str | None = None, at: dt.datetime | None = None) -> dt.datetime:
        moment = at or utc_now()
        self.events.append(Event(moment, what, credential))
        self.save()
        return moment

    def earlier(self, credential_type: str, old_fp: str) -> CredentialOutcome | None:
        """This credential's outcome from an earlier run of this incident (same compromised credential), if any."""
        outcome = self.outcomes.get(credential_type)
        return outcome if outcome is not None and outcome.old_fp == old_fp else None

    def finished_earlier(self, credential_type: str) -> CredentialOutcome | None:
        outcome = self.outcomes.get(credential_type)
        return outcome if outcome is not None and outcome.finished else None

    def begin(self, credential_type: str, old_fp: str, *, rotation_id: str | None = None) -> CredentialOutcome:
        earlier = self.earlier(credential_type, old_fp)
        if earlier is not None:  # an earlier run of this incident stopped before it changed anything lasting
            earlier.resumed, earlier.waiting = True, None
            self.note(f"{credential_type}: continued by a later run of the incident", credential_type)
            return earlier
        outcome = CredentialOutcome(credential_type, self.note(f"{credential_type}: emergency rotation started",
                                                                credential_type), old_fp, rotation_id=rotation_id,
                                    detected_at=self.detected_at)
        self.outcomes[credential_type] = outcome
        self.save()
        return outcome

    def resume(self, credential_type: str, old_fp: str, *, started_at: dt.datetime, rotation_id: str,
               revoked_at: dt.datetime | None) -> CredentialOutcome:
        """A rotation an interrupted run began: its start (and revocation, if it got that far) as that run recorded
        them in the rotation state. The response began then, so the record's start moves back to it. With the
        incident's ledger the earlier run's own record is kept as it is (its times are the original ones)."""
        earlier = self.earlier(credential_type, old_fp)
        if earlier is not None:
            earlier.resumed, earlier.waiting = True, None
            earlier.rotation_id = earlier.rotation_id or rotation_id
            self.note(f"{credential_type}: resumed after the interruption", credential_type)
            return earlier
        self.started_at = min(self.started_at, started_at)
        self.note(f"{credential_type}: emergency rotation started (by the interrupted run)", credential_type,
                  started_at)
        self.note(f"{credential_type}: resumed after the interruption", credential_type)
        outcome = CredentialOutcome(credential_type, started_at, old_fp, rotation_id=rotation_id, resumed=True,
                                    detected_at=self.detected_at)
        if revoked_at is not None:
            outcome.outage_from = self.note(f"{credential_type}: compromised credential revoked at the provider "
                                            "(by the interrupted run)", credential_type, revoked_at)
        self.outcomes[credential_type] = outcome
        return outcome

    def revoked(self, credential_type: str, new_fp: str | None, detail: str, at: dt.datetime | None = None) -> None:
        """Proven revoked. The time is the first proof's (an earlier run's, or `at`: when the refusal was first
        observed), not the moment this step re-checked it."""
        outcome = self.outcomes[credential_type]
        moment = self.note(f"{credential_type}: {detail}", credential_type, at)
        outcome.revoked_at = min(outcome.revoked_at, moment) if outcome.revoked_at else moment
        outcome.new_fp = new_fp or outcome.new_fp
        outcome.waiting = None
        self.save()

    def outage(self, credential_type: str, detail: str, at: dt.datetime | None = None) -> None:
        """The app lost a working credential. Across runs the outage counts from the first such moment."""
        moment = self.note(f"{credential_type}: {detail}", credential_type, at)
        outcome = self.outcomes[credential_type]
        outcome.outage_from = min(outcome.outage_from, moment) if outcome.outage_from else moment
        self.save()

    def waiting(self, credential_type: str, why: str) -> None:
        self.outcomes[credential_type].waiting = why
        self.save()

    def finished(self, credential_type: str) -> None:
        self.outcomes[credential_type].finished = True
        self.note(f"{credential_type}: rotation logged; nothing left to do for this credential", credential_type)

    @property
    def complete(self) -> bool:
        """Every compromised credential of the incident is finished."""
        return bool(self.compromised) and all(
            (o := self.outcomes.get(t)) is not None and o.finished for t in self.compromised)

    def statuses(self) -> dict[str, str]:
        """Every compromised credential with its status, started or not."""
        return {t: self.outcomes[t].status if t in self.outcomes else "not started"
                for t in (*self.compromised, *(t for t in self.outcomes if t not in self.compromised))}

    # --- the ledger (one incident across runs) ---------------------------------------------------------------------
    def to_json(self) -> dict[str, object]:
        return {"change_id": self.change_id, "started_at": iso(self.started_at), "detected_at": iso(self.detected_at),
                "compromised": list(self.compromised), "runs": self.runs,
                "events": [{"at": iso(e.at), "what": e.what, "credential": e.credential} for e in self.events],
                "outcomes": {t: o.to_json() for t, o in self.outcomes.items()}}

    def save(self) -> None:
        """Written at every event (temp file, fsync, rename, 0600): a kill -9 loses at most the event in flight."""
        if self.path is None:
            return
        temp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.to_json(), out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.path)

    def restored(self, credential_type: str, detail: str) -> None:
        self.outcomes[credential_type].restored_at = self.note(f"{credential_type}: {detail}", credential_type)
        self.save()

    def timeline(self) -> list[Event]:
        return sorted(self.events, key=lambda e: e.at)

    def rotated(self) -> list[CredentialOutcome]:
        return [o for o in self.outcomes.values() if o.revoked_at]


def iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds") if moment else None


def parse_iso(text: str) -> dt.datetime:
    """A time the rotation state wrote (ISO 8601 with offset)."""
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def seconds(delta: dt.timedelta | None) -> float | None:
    return round(delta.total_seconds(), 3) if delta is not None else None


def hms(delta: dt.timedelta | None) -> str:
    if delta is None:
        return "-"
    total = delta.total_seconds()
    return f"{total:.1f} s" if total < 120 else f"{int(total // 60)} min {int(total % 60)} s"


IMMEDIATE_TARGET = dt.timedelta(hours=1)  # runbook: Emergency Rotation Procedure, "Immediate Actions (within 1 hour)"


def target_verdict(delta: dt.timedelta | None, not_yet: str) -> str:
    """A time from detection (or the rotation's start) against the runbook's one-hour target."""
    if delta is None:
        return f"NOT MET YET ({not_yet})"
    return "met" if delta <= IMMEDIATE_TARGET else "MISSED"


def within_target(outcome: CredentialOutcome) -> str:
    return "1-hour target: " + target_verdict(outcome.time_to_revoke, "not revoked")


LEDGER_FILE = ".rotation-incident.json"


class IncidentConflict(RotationError):
    """Another incident is unfinished beside this .env: finish it first (with its change id)."""


def ledger_path(env_file: Path) -> Path:
    return env_file.with_name(LEDGER_FILE)


def open_incident(env_file: Path, *, change_id: str | None, detected_at: dt.datetime | None,
                  compromised: tuple[str, ...], pid: int | None = None) -> IncidentRecord:
    """This run's incident: the unfinished one beside .env when the change id is the same (one incident across
    runs), else a new one. An unfinished incident under another change id is refused (IncidentConflict), naming it;
    a finished one is kept under its change id's name and a new incident begins."""
    path = ledger_path(env_file)
    record = _load(path) if path.exists() else None
    if record is not None and record.change_id != change_id:
        if not record.complete:
            unfinished = ", ".join(f"{t}: {s}" for t, s in record.statuses().items() if s != "revoked and replaced")
            raise IncidentConflict(
                f"the emergency of change {record.change_id or '(no change id)'} is not finished ({unfinished}): "
                f"nothing was changed. Finish it first: run the same command with --change-id={record.change_id}")
        path.replace(path.with_name(f"{LEDGER_FILE[:-5]}-{record.change_id or 'none'}-{iso(record.started_at)}.json"))
        record = None
    if record is None:
        record = IncidentRecord(change_id=change_id, detected_at=detected_at, compromised=compromised, path=path)
    else:
        record.path = path
        record.compromised = tuple(dict.fromkeys((*record.compromised, *compromised)))
        record.detected_at = record.detected_at or detected_at
    record.runs.append({"run": len(record.runs) + 1, "started_at": iso(utc_now()), "pid": pid or os.getpid(),
                        "compromised": list(compromised)})
    record.note(f"run {len(record.runs)} of the incident started" + (" (continuing it)" if len(record.runs) > 1
                                                                      else ""))
    return record


def _load(path: Path) -> IncidentRecord:
    data = json.loads(path.read_text())
    return IncidentRecord(
        started_at=parse_iso(data["started_at"]), change_id=data.get("change_id"),
        detected_at=parse_iso(data["detected_at"]) if data.get("detected_at") else None,
        compromised=tuple(data.get("compromised", ())), runs=list(data.get("runs", [])),
        events=[Event(parse_iso(e["at"]), e["what"], e.get("credential")) for e in data.get("events", [])],
        outcomes={t: CredentialOutcome.from_json(o) for t, o in data.get("outcomes", {}).items()})
