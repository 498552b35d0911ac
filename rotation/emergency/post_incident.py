"""Runbook "Post-Incident Actions": the audit query over the incident window and the incident document.

The document (Markdown, `incident-report.md` in the run's report folder) has: the incident window and who ran and
approved the response; a timeline built only from the run's own timestamps; per credential, time to revoke and time
to restore; the access review's findings; the audit rows over the incident window; root cause and preventive
measures as the operator gave them (options or a YAML file).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import yaml

from rotation.emergency.incident import IncidentRecord, hms, iso

AUDIT_QUERY = """
SELECT client_id, access_type, accessed_by, access_timestamp, host(ip_address) AS ip_address, purpose
FROM crm_data_access_log
WHERE access_timestamp BETWEEN %(start)s AND %(end)s
ORDER BY access_timestamp
"""
AUDIT_COLUMNS = ("client_id", "access_type", "accessed_by", "access_timestamp", "ip_address", "purpose")
DOCUMENT_NAME = "incident-report.md"
MAX_AUDIT_ROWS_IN_DOCUMENT = 200


class IncidentInputError(ValueError):
    pass


@dataclass(frozen=True)
class Narrative:
    """What only people know: why it happened and what changes because of it."""

    root_cause: str = ""
    preventive_measures: tuple[str, ...] = ()
    summary: str = ""

    def missing(self) -> list[str]:
        return [name for name, value in (("root cause", self.root_cause),
                                         ("preventive measures", self.preventive_measures)) if not value]


def load_narrative(path: Path | None, *, root_cause: str | None = None,
                   preventive: list[str] | None = None) -> Narrative:
    """From a YAML file (root_cause, preventive_measures, summary) with options taking precedence."""
    data: dict[str, object] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise IncidentInputError(f"cannot read the incident notes {path}: {type(exc).__name__}") from None
        if not isinstance(loaded, dict):
            raise IncidentInputError(f"{path} must hold a mapping: root_cause, preventive_measures, summary")
        data = loaded
    measures = preventive or data.get("preventive_measures") or []
    if isinstance(measures, str):
        measures = [measures]
    return Narrative(str(root_cause or data.get("root_cause") or "").strip(),
                     tuple(str(m).strip() for m in measures if str(m).strip()), str(data.get("summary") or "").strip())


@dataclass(frozen=True)
class AuditResult:
    start: dt.datetime
    end: dt.datetime
    rows: list[tuple] = field(default_factory=list)

    def as_evidence(self) -> dict[str, object]:
        return {"start": iso(self.start), "end": iso(self.end), "rows": len(self.rows),
                "first_rows": [dict(zip(AUDIT_COLUMNS, map(_cell, r), strict=True)) for r in self.rows[:50]]}


def audit(conn: psycopg.Connection, start: dt.datetime, end: dt.datetime) -> AuditResult:
    """The runbook's audit query with the window as bound parameters (read-only)."""
    if end < start:
        raise IncidentInputError(f"--incident-end {iso(end)} is before --incident-start {iso(start)}")
    rows = conn.execute(AUDIT_QUERY, {"start": start, "end": end}).fetchall()
    conn.commit()
    return AuditResult(start, end, rows)


def _cell(value: object) -> str:
    if isinstance(value, dt.datetime):
        return iso(value) or ""
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out


@dataclass(frozen=True)
class IncidentContext:
    incident_start: dt.datetime
    incident_end: dt.datetime
    operator: str
    approver: str | None
    change_id: str | None
    target: str


def render(record: IncidentRecord, context: IncidentContext, audit_result: AuditResult,
           narrative: Narrative) -> str:
    c = context
    lines = [f"# Incident report: emergency credential rotation {c.change_id or ''}".rstrip(), "",
             f"- Incident window: {iso(c.incident_start)} .. {iso(c.incident_end)}",
             f"- Response run: started {iso(record.started_at)} on target `{c.target}` by {c.operator}; "
             f"approved by {c.approver or '-'}; change {c.change_id or '-'}",
             f"- Credentials rotated: {', '.join(o.credential_type for o in record.rotated()) or 'none'}", ""]
    if narrative.summary:
        lines += ["## Summary", "", narrative.summary, ""]
    lines += ["## Timeline (UTC, recorded by the run as each step finished)", ""]
    lines += _table(("time", "event"), [(e.at, e.what) for e in record.timeline()])
    lines += ["", "## Credentials revoked and replaced", ""]
    lines += _table(("credential", "started", "revoked", "time to revoke", "restored", "time to restore",
                     "old (fingerprint)", "new (fingerprint)", "old credential now"),
                    [(o.credential_type, o.started_at, o.revoked_at, hms(o.time_to_revoke), o.restored_at,
                      hms(o.time_to_restore), o.old_fp, o.new_fp, o.rejection) for o in record.outcomes.values()])
    lines += ["", "## Findings of the access review", ""]
    if record.review:
        lines += [f"- {record.review.summary()}"]
        lines += [f"- {f.line()}" for f in record.review.flagged]
        lines += [f"- volume: {v.line()}" for v in record.review.volume]
    else:
        lines += ["- the access review did not run in this run"]
    lines += ["", "## Stakeholder notification", ""]
    n = record.notification
    lines += [f"- delivered {iso(n.accepted_at)} via {n.relay} to {', '.join(n.recipients)}; message {n.message_id}; "
              f"body sha256 {n.body_sha256}"] if n else ["- not sent in this run"]
    lines += ["", f"## Audit of crm_data_access_log over the incident window ({len(audit_result.rows)} rows)", "",
              "```sql", AUDIT_QUERY.strip(), "```", ""]
    lines += _table(AUDIT_COLUMNS, audit_result.rows[:MAX_AUDIT_ROWS_IN_DOCUMENT])
    if len(audit_result.rows) > MAX_AUDIT_ROWS_IN_DOCUMENT:
        lines.append(f"\n({len(audit_result.rows) - MAX_AUDIT_ROWS_IN_DOCUMENT} more rows in the evidence)")
    lines += ["", "## Root cause", "", narrative.root_cause or "_not yet determined_", "",
              "## Preventive measures", ""]
    lines += [f"- {m}" for m in narrative.preventive_measures] or ["_none recorded yet_"]
    return "\n".join(lines) + "\n"


def write_document(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DOCUMENT_NAME
    path.write_text(text)
    return path
