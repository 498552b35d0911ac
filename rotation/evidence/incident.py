"""The incident section of the print: an emergency run records its incident (every run of it) as one structured run
item, INCIDENT_ITEM (rotation.emergency.post_incident.print_record); the auditor's summary renders it whole: the
timeline, time to revoke and to restore per credential from the detection time against the runbook's one-hour
target, the access review's findings, root cause and preventive measures, and the security-measures review as the
operator declared it. Nothing here computes a fact: it reads the item, so the print and evidence.jsonl agree."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from rotation.evidence.recorder import EvidenceItem

INCIDENT_ITEM = "incident record"
# The closing lines of an emergency (what the terminal printed): the incident section holds the same facts, so with it
# the summary leaves them to the details (one summary, no second timeline)
INCIDENT_CLOSING = "emergency rotation: time to revoke and restore"


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _rows(value: object) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return []
    return [{str(k): _text(v) for k, v in row.items()} for row in value if isinstance(row, dict)]


def _strings(value: object) -> list[str]:
    return [_text(v) for v in value] if isinstance(value, list) else []


@dataclass(frozen=True)
class IncidentView:
    """What the template prints; `line`: the item's line in evidence.jsonl."""

    change_id: str
    status: str
    runs: str
    detected_at: str
    measured_from: str
    target: str
    credentials: list[dict[str, str]]
    timeline: list[dict[str, str]]
    review_summary: str
    review_ran: bool
    findings: list[str]
    root_cause: str
    preventive_measures: list[str]
    security_review: list[dict[str, str]]
    declared_in: str
    earlier_folders: list[dict[str, str]] = field(default_factory=list)
    line: int | None = None
    notes: list[str] = field(default_factory=list)


def incident_view(items: list[EvidenceItem], seq_of: dict[int, int]) -> IncidentView | None:
    """The run's incident, when it recorded one (the newest item: a run records it once, at its end)."""
    found = [i for i in items if i.name == INCIDENT_ITEM and isinstance(i.value, dict)]
    if not found:
        return None
    item = found[-1]
    v: dict[str, object] = item.value  # type: ignore[assignment]
    review = v.get("access review") if isinstance(v.get("access review"), dict) else {}
    assert isinstance(review, dict)
    return IncidentView(
        change_id=_text(v.get("change id")) or "(no change id)", status=_text(v.get("status")),
        runs=_text(v.get("runs")), detected_at=_text(v.get("detected at")),
        measured_from=_text(v.get("measured from")), target=_text(v.get("target")),
        credentials=_rows(v.get("credentials")), timeline=_rows(v.get("timeline")),
        review_summary=_text(review.get("summary")), review_ran=bool(review.get("ran")),
        findings=_strings(review.get("findings")), root_cause=_text(v.get("root cause")),
        preventive_measures=_strings(v.get("preventive measures")), security_review=_rows(v.get("security review")),
        declared_in=_text(v.get("declared in")), earlier_folders=_rows(v.get(EARLIER_FOLDERS)),
        line=seq_of.get(id(item)))


EARLIER_FOLDERS = "earlier run folders"  # key of the incident item: one incident, one record across run folders


def run_folders(reports_dir: Path, run_ids: list[str]) -> list[dict[str, str]]:
    """Every earlier run of the incident with its sealed run folder under `reports_dir` (a killed run's folder is
    sealed from its journal by the next session, before this one ends): the folder's name, the SHA-256 of its
    manifest.json (which signs every file of it) and the verdict that manifest states. A run without a sealed folder
    here is named as such, never left out."""
    manifests: dict[str, tuple[Path, bytes]] = {}
    for path in sorted(reports_dir.glob("*/manifest.json")) if reports_dir.is_dir() else []:
        if path.parent.is_symlink():  # reports/latest: another name of a folder already listed
            continue
        try:
            raw = path.read_bytes()
            run_id = str(json.loads(raw).get("run_id") or "")
        except (OSError, ValueError):
            continue
        manifests.setdefault(run_id, (path, raw))
    rows = []
    for run_id in run_ids:
        found = manifests.get(run_id)
        if found is None:
            rows.append({"run id": run_id, "folder": "no sealed run folder found in the reports directory",
                         "manifest sha256": "-", "verdict": "-"})
            continue
        path, raw = found
        rows.append({"run id": run_id, "folder": path.parent.name, "manifest sha256": hashlib.sha256(raw).hexdigest(),
                     "verdict": str(json.loads(raw).get("verdict") or "not stated")})
    return rows
