"""The emergency run's own record of the incident: when each credential's procedure began, when the compromised
credential was proven dead (revoked), when the app was healthy again on the new one (restored), the access review's
findings and the notification's delivery. Times come from the clock at the moment each step finished; nothing is typed
in by hand. A resumed rotation takes its start and its revocation from the rotation state the interrupted run wrote.
Holds fingerprints only, never a credential.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the access review records into the incident; the incident only holds its result
    from rotation.emergency.access_review import ReviewResult


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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

    @property
    def time_to_revoke(self) -> dt.timedelta | None:
        return self.revoked_at - self.started_at if self.revoked_at else None

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
                "resumed": self.resumed}


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

    def note(self, what: str, credential: str | None = None, at: dt.datetime | None = None) -> dt.datetime:
        moment = at or utc_now()
        self.events.append(Event(moment, what, credential))
        return moment

    def begin(self, credential_type: str, old_fp: str, *, rotation_id: str | None = None) -> CredentialOutcome:
        outcome = CredentialOutcome(credential_type, self.note(f"{credential_type}: emergency rotation started",
                                                                credential_type), old_fp, rotation_id=rotation_id)
        self.outcomes[credential_type] = outcome
        return outcome

    def resume(self, credential_type: str, old_fp: str, *, started_at: dt.datetime, rotation_id: str,
               revoked_at: dt.datetime | None) -> CredentialOutcome:
        """A rotation an interrupted run began: its start (and revocation, if it got that far) as that run recorded
        them in the rotation state. The response began then, so the record's start moves back to it."""
        self.started_at = min(self.started_at, started_at)
        self.note(f"{credential_type}: emergency rotation started (by the interrupted run)", credential_type,
                  started_at)
        self.note(f"{credential_type}: resumed after the interruption", credential_type)
        outcome = CredentialOutcome(credential_type, started_at, old_fp, rotation_id=rotation_id, resumed=True)
        if revoked_at is not None:
            outcome.outage_from = self.note(f"{credential_type}: compromised credential revoked at the provider "
                                            "(by the interrupted run)", credential_type, revoked_at)
        self.outcomes[credential_type] = outcome
        return outcome

    def revoked(self, credential_type: str, new_fp: str | None, detail: str) -> None:
        outcome = self.outcomes[credential_type]
        outcome.revoked_at = self.note(f"{credential_type}: {detail}", credential_type)
        outcome.new_fp = new_fp or outcome.new_fp

    def outage(self, credential_type: str, detail: str, at: dt.datetime | None = None) -> None:
        self.outcomes[credential_type].outage_from = self.note(f"{credential_type}: {detail}", credential_type, at)

    def restored(self, credential_type: str, detail: str) -> None:
        self.outcomes[credential_type].restored_at = self.note(f"{credential_type}: {detail}", credential_type)

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
