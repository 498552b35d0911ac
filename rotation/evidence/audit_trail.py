"""The audit period: every rotation of every credential between two dates, from the rotation log
(security_credential_rotations) and the archived run folders, as a SOC 2 Type II auditor samples it.

- Each credential's rotations in order, each interval against the registry's policy (`interval_days`), a gap longer
  than the interval flagged; so is a credential not rotated within its interval from the period's start (or from its
  last rotation before the period) and up to the period's end (or now, if sooner).
- Each logged rotation with its evidence: the live run folder that names the log row (by rotation_id), its signature
  checked against the pinned signer. A rotation without evidence is flagged; so is evidence that does not verify.
- Evidence with no logged rotation: a live run folder naming a rotation log row the log does not hold.
Rows the app's own trigger logs under a service name ('twilio', ...) count for their credential (config.log_type);
rows of a type the registry does not know are listed and flagged.

Run folders are found by walking the archive directories for folders holding a manifest.json (the `latest` link is
skipped); staging rehearsals are listed, never matched to the live log.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from rotation.core.config import Config
from rotation.evidence.signing import AUDIT_TRAIL_FORMAT
from rotation.evidence.verify import verify_folder

LOG_QUERY = """
SELECT rotation_id::text, credential_type, rotated_at, rotated_by, rotation_reason, previous_key_hash
FROM security_credential_rotations
WHERE rotated_at >= %(start)s AND rotated_at < %(end)s
ORDER BY rotated_at
"""
BEFORE_QUERY = """
SELECT credential_type, max(rotated_at) FROM security_credential_rotations WHERE rotated_at < %(start)s
GROUP BY credential_type
"""


@dataclass
class Rotation:
    rotation_id: str
    credential: str | None  # the registry's type; None for a type it does not know
    logged_as: str
    rotated_at: dt.datetime
    rotated_by: str
    reason: str | None
    evidence: list[str] = field(default_factory=list)  # run folders naming this row
    previous_key_hash: str | None = None  # SHA-256 of the value this rotation replaced
    retired_by: list[str] = field(default_factory=list)  # retirement run folders that destroyed (or escrowed) it


@dataclass
class RunFolder:
    path: str
    target: str
    started: str | None
    operator: str | None
    approver: str | None
    change_id: str | None
    verdict: str | None
    intact: bool
    signer_verified: bool
    problems: list[str]
    rotation_ids: list[str]
    retirements: list[dict[str, Any]] = field(default_factory=list)  # its "retirement record" items
    escrows_destroyed: list[str] = field(default_factory=list)  # escrow files it destroyed


@dataclass
class Interval:
    credential: str
    start: dt.datetime
    end: dt.datetime
    start_is: str  # "rotation", "period start" or "last rotation before the period"
    end_is: str  # "rotation", "period end" or "now"
    allowed_days: int

    @property
    def days(self) -> float:
        return round((self.end - self.start).total_seconds() / 86400, 1)

    @property
    def gap(self) -> bool:
        return self.days > self.allowed_days


@dataclass
class AuditTrail:
    start: dt.datetime
    end: dt.datetime
    pin: str
    rotations: list[Rotation]
    folders: list[RunFolder]
    intervals: list[Interval]
    findings: list[str]
    awaiting_retirement: list[str] = field(default_factory=list)  # old values still kept past the quiet period
    escrows_due: list[str] = field(default_factory=list)  # escrows past their destruction date, not destroyed

    def as_json(self) -> dict[str, Any]:
        def plain(value: object) -> object:
            return value.isoformat().replace("+00:00", "Z") if isinstance(value, dt.datetime) else value
        data: dict[str, Any] = json.loads(json.dumps({
            "period": {"from": plain(self.start), "to": plain(self.end)}, "signer_pin": self.pin,
            "findings": self.findings,
            "intervals": [{**asdict(i), "days": i.days, "gap": i.gap} for i in self.intervals],
            "rotations": [asdict(r) for r in self.rotations], "run_folders": [asdict(f) for f in self.folders],
            "awaiting_retirement": self.awaiting_retirement, "escrows_due": self.escrows_due,
        }, default=plain))
        return data


def run_folders(roots: Iterable[Path]) -> list[Path]:
    """Every run folder (a directory holding manifest.json) under the roots, once each, links not followed."""
    seen: dict[Path, None] = {}
    for root in roots:
        for manifest in sorted(root.rglob("manifest.json")):
            folder = manifest.parent
            if (not any(p.is_symlink() for p in (folder, *folder.parents)) and folder.resolve() not in seen
                    and not _audit_trail_output(manifest)):
                seen[folder.resolve()] = None
    return list(seen)


def _audit_trail_output(manifest: Path) -> bool:
    """An earlier audit trail's own signed output is not a run folder."""
    try:
        return bool(json.loads(manifest.read_text(encoding="utf-8")).get("format") == AUDIT_TRAIL_FORMAT)
    except (OSError, ValueError, AttributeError):
        return False


def _entries(folder: Path) -> list[dict[str, Any]]:
    out = []
    try:
        for line in (folder / "evidence.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    except OSError:
        pass
    return out


def logged_ids(entries: list[dict[str, Any]]) -> list[str]:
    """The rotation log rows a run names: items whose value is a log row (rotation_id, credential_type, rotated_at)."""
    ids = []
    for e in entries:
        value = e.get("value")
        if e.get("type") == "evidence" and isinstance(value, dict) and {"rotation_id", "credential_type",
                                                                          "rotated_at"} <= set(value):
            ids.append(str(value["rotation_id"]))
    return list(dict.fromkeys(ids))


def read_folder(folder: Path, *, public_key: Path | None, fingerprint: str | None) -> RunFolder:
    checked = verify_folder(folder, public_key, fingerprint=fingerprint)
    entries = _entries(folder)
    run = next((e for e in entries if e.get("type") == "run"), {})
    verdict = next((e.get("verdict") for e in entries if e.get("type") == "verdict"), None)
    return RunFolder(str(folder), str(run.get("target", "unknown")), run.get("started"), run.get("operator"),
                     run.get("approver"), run.get("change_id"), verdict, checked.passed, checked.signer_verified,
                     checked.problems, logged_ids(entries), _named(entries, "retirement record"),
                     [str(v.get("file")) for v in _named(entries, "escrow destroyed")])


def _named(entries: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e["value"] for e in entries if e.get("type") == "evidence" and e.get("name") == name
            and isinstance(e.get("value"), dict)]


def logged_rotations(conn: psycopg.Connection[Any], config: Config, start: dt.datetime,
                     end: dt.datetime) -> tuple[list[Rotation], dict[str, dt.datetime]]:
    """The log's rows in the period, and each credential's last rotation before it."""
    rows = conn.execute(LOG_QUERY, {"start": start, "end": end}).fetchall()
    before: dict[str, dt.datetime] = {}
    for logged, at in conn.execute(BEFORE_QUERY, {"start": start}).fetchall():
        credential = config.log_type(logged)
        if credential is not None and (credential not in before or at > before[credential]):
            before[credential] = at
    rotations = [Rotation(str(r[0]), config.log_type(str(r[1])), str(r[1]), r[2], str(r[3] or ""), r[4],
                          previous_key_hash=r[5]) for r in rows]
    return rotations, before


def intervals(config: Config, rotations: list[Rotation], before: dict[str, dt.datetime], start: dt.datetime,
              end: dt.datetime) -> list[Interval]:
    out = []
    for credential in config.credentials:
        allowed = credential.interval.days
        moments = [(before[credential.type], "last rotation before the period")] if credential.type in before \
            else [(start, "period start")]
        moments += [(r.rotated_at, "rotation") for r in rotations if r.credential == credential.type]
        moments.append((end, "period end") if end <= dt.datetime.now(dt.UTC) else (dt.datetime.now(dt.UTC), "now"))
        out += [Interval(credential.type, a, b, a_is, b_is, allowed)
                for (a, a_is), (b, b_is) in zip(moments, moments[1:], strict=False)]
    return out


def audit(conn: psycopg.Connection[Any], config: Config, archives: Iterable[Path], start: dt.datetime,
          end: dt.datetime, *, public_key: Path | None = None, fingerprint: str | None = None) -> AuditTrail:
    rotations, before = logged_rotations(conn, config, start, end)
    folders = [read_folder(f, public_key=public_key, fingerprint=fingerprint) for f in run_folders(archives)]
    by_id = {r.rotation_id: r for r in rotations}
    findings: list[str] = []
    if public_key is None and fingerprint is None:
        findings.append("no signer pinned (--fingerprint or --public-key): no run folder's signer is verified")
    for folder in folders:
        if folder.target != "live":
            continue
        if not folder.intact or (not folder.signer_verified and (public_key or fingerprint)):
            findings.append(f"evidence does not verify: {folder.path}: " + "; ".join(folder.problems[:3]))
        for rotation_id in folder.rotation_ids:
            if rotation_id in by_id:
                by_id[rotation_id].evidence.append(folder.path)
            elif _in_period(folder, start, end):
                findings.append(f"evidence with no logged rotation: {folder.path} names rotation log row "
                                f"{rotation_id}, which the log does not hold")
    for r in rotations:
        if r.credential is None:
            findings.append(f"rotation log row {r.rotation_id} of unknown credential type '{r.logged_as}'")
        if not r.evidence:
            findings.append(f"rotation without evidence: {r.credential or r.logged_as} rotated "
                            f"{_day(r.rotated_at)} by {r.rotated_by or 'unknown'} (log row {r.rotation_id}): no "
                            "archived live run folder names it")
    spans = intervals(config, rotations, before, start, end)
    findings += [f"gap: {i.credential} went {i.days} days without rotation ({i.start_is} {_day(i.start)} to "
                 f"{i.end_is} {_day(i.end)}); its policy allows {i.allowed_days}" for i in spans if i.gap]
    pin = fingerprint or (str(public_key) if public_key else "none")
    awaiting, due = retirement_status(config, rotations, folders, min(end, dt.datetime.now(dt.UTC)))
    return AuditTrail(start, end, pin, rotations, folders, spans, findings, awaiting, due)


def retirement_status(config: Config, rotations: list[Rotation], folders: list[RunFolder],
                      now: dt.datetime) -> tuple[list[str], list[str]]:
    """Old values past their quiet period with no verified live retirement record naming them, and escrows past
    their destruction date that no retirement run destroyed (the record names a value by its fingerprint, the log
    by its full SHA-256: a fingerprint is that hash's first 16 hex digits)."""
    trusted = [f for f in folders if f.target == "live" and f.intact]
    for r in rotations:
        r.retired_by = [f.path for f in trusted for rec in f.retirements
                        if any(_names(r.previous_key_hash, fp) for fp in _retired_values(rec))]
    quiet = config.retirement.quiet_period
    awaiting = [f"{r.credential}: the value rotation {r.rotation_id} replaced on {_day(r.rotated_at)} "
                f"(sha256:{(r.previous_key_hash or '')[:16]}) has no retirement record; retirement was due "
                f"{_day(r.rotated_at + quiet)} ([retirement] quiet_period_hours)"
                for r in rotations if r.credential and r.previous_key_hash and not r.retired_by
                and r.rotated_at + quiet <= now]
    destroyed = {path for f in trusted for path in f.escrows_destroyed}
    due = [f"{rec['escrow']['credential']} {rec['escrow']['sealed value']}: escrow {rec['escrow']['file']} was to "
           f"be destroyed after {rec['escrow']['destroy after']} (sealed by {f.path})"
           for f in trusted for rec in f.retirements if isinstance(rec.get("escrow"), dict)
           and rec["escrow"].get("file") not in destroyed
           and str(rec["escrow"].get("destroy after", "9999")) <= now.isoformat().replace("+00:00", "Z")]
    return awaiting, due


def _retired_values(record: dict[str, Any]) -> list[str]:
    """The fingerprints a retirement record destroyed: its own value and those of other credentials the same files
    held (`also retired`)."""
    also = [a.get("retired value") for f in record.get("files destroyed", []) if isinstance(f, dict)
            for a in f.get("also retired", []) if isinstance(a, dict)]
    return [str(v) for v in [record.get("retired value"), *also] if v]


def _names(full_hash: str | None, fingerprint: str) -> bool:
    return bool(full_hash) and fingerprint.startswith("sha256:") and \
        str(full_hash).startswith(fingerprint.removeprefix("sha256:"))


def _day(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d")


def _in_period(folder: RunFolder, start: dt.datetime, end: dt.datetime) -> bool:
    try:
        moment = dt.datetime.fromisoformat(str(folder.started).replace("Z", "+00:00"))
    except ValueError:
        return True
    return start <= moment < end
