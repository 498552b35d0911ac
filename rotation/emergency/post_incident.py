"""Runbook "Post-Incident Actions": the audit query over the incident window and the incident document.

The audit is the runbook's query over the access log (the configuration's [access_review.access_log] table and
columns), with the window as bound parameters. The document (Markdown, `incident-report.md` in the run folder, under
the signed manifest) has: the incident window and who ran and approved the response; a timeline built only from the
run's own timestamps; per credential, time to revoke and time to restore; the access review's findings; the
notification's delivery; the audit rows; root cause and preventive measures as the operator gave them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from rotation.core.clock import utc_now
from rotation.core.database import connect
from rotation.core.deployment import Deployment
from rotation.core.errors import RotationError
from rotation.core.proof import Evidence, require
from rotation.core.yamlfile import load_mapping
from rotation.emergency import populations
from rotation.emergency.access_review import AccessLogTable, identifier
from rotation.emergency.incident import (
    IMMEDIATE_TARGET,
    CredentialOutcome,
    IncidentRecord,
    hms,
    iso,
    target_verdict,
)

AUDIT_QUERY = """
SELECT {client}, {access_type}, {accessed_by}, {at}, host({ip_address}) AS {ip_name}, {purpose}
FROM {table}
WHERE {at} > %(start)s AND {at} <= %(end)s  -- the window (start, end]: rotation.emergency.populations
ORDER BY {at}
"""
AUDIT_TOTAL = "SELECT count(*) FROM {table} WHERE {at} > %(start)s AND {at} <= %(end)s"
DOCUMENT_NAME = "incident-report.md"
MAX_AUDIT_ROWS_IN_DOCUMENT = 200
TIMELINE_HEADING = "## Timeline (UTC, recorded by the run as each step finished)"


class IncidentInputError(RotationError, ValueError):
    pass


SECURITY_AREAS = ("firewall rules", "access controls", "monitoring")


@dataclass(frozen=True)
class SecurityReview:
    area: str
    who: str
    when: str
    outcome: str


def _security_review(value: object) -> tuple[SecurityReview, ...]:
    if not value:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise IncidentInputError("security_review must be a list of {area, who, when, outcome}")
    rows = []
    for item in value:
        missing = [k for k in ("area", "who", "when", "outcome") if not str(item.get(k) or "").strip()]
        if missing:
            raise IncidentInputError(f"security_review entry {item.get('area')!r} lacks {', '.join(missing)}")
        rows.append(SecurityReview(*(str(item[k]).strip() for k in ("area", "who", "when", "outcome"))))
    return tuple(rows)


@dataclass(frozen=True)
class Narrative:
    """What only people know: why it happened and what changes because of it."""

    root_cause: str = ""
    preventive_measures: tuple[str, ...] = ()
    summary: str = ""
    # The runbook's "Review Security Measures" (firewall rules, access controls, monitoring): who reviewed each, when,
    # and the outcome, as the operator declares them (the tool cannot check a firewall; it records what it was told)
    security_review: tuple[SecurityReview, ...] = ()

    def security_rows(self) -> list[tuple[str, str, str, str]]:
        """One row per area the runbook names (an area nobody declared reads "not recorded"), then any other."""
        declared = {r.area.lower(): r for r in self.security_review}
        rows = [(a, *(declared[a].who, declared[a].when, declared[a].outcome)) if a in declared
                else (a, "-", "-", "not recorded") for a in SECURITY_AREAS]
        return rows + [(r.area, r.who, r.when, r.outcome) for r in self.security_review
                       if r.area.lower() not in SECURITY_AREAS]

    def missing(self) -> list[str]:
        return [name for name, value in (("root cause", self.root_cause),
                                         ("preventive measures", self.preventive_measures)) if not value]


def load_narrative(path: Path | None, *, root_cause: str | None = None,
                   preventive: list[str] | None = None) -> Narrative:
    """From a YAML file (root_cause, preventive_measures, summary) with options taking precedence."""
    data: dict[str, Any] = {}
    if path is not None:
        data = load_mapping(path, IncidentInputError, "the incident notes",
                            ": root_cause, preventive_measures, summary")
    measures: object = preventive or data.get("preventive_measures") or []
    listed = [measures] if isinstance(measures, str) else list(measures) if isinstance(measures, list) else []
    return Narrative(str(root_cause or data.get("root_cause") or "").strip(),
                     tuple(str(m).strip() for m in listed if str(m).strip()), str(data.get("summary") or "").strip(),
                     _security_review(data.get("security_review")))


@dataclass(frozen=True)
class AuditResult:
    start: dt.datetime
    end: dt.datetime
    columns: tuple[str, ...]
    query: str
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def as_evidence(self) -> dict[str, object]:
        return {"start": iso(self.start), "end": iso(self.end), "rows": len(self.rows),
                "first_rows": [dict(zip(self.columns, map(_cell, r), strict=True)) for r in self.rows[:50]]}


def _queries(table: AccessLogTable) -> tuple[sql.Composed, sql.Composed]:
    names = {k: identifier(v) for k, v in table.__dict__.items()} | {"ip_name": identifier(table.ip_address)}
    return sql.SQL(AUDIT_QUERY).format(**names), sql.SQL(AUDIT_TOTAL).format(**names)


def audit(conn: psycopg.Connection[Any], table: AccessLogTable, start: dt.datetime, end: dt.datetime) -> AuditResult:
    """The runbook's audit query with the window as bound parameters (read-only)."""
    if end < start:
        raise IncidentInputError(f"the incident window ends ({iso(end)}) before it starts ({iso(start)})")
    query, _ = _queries(table)
    rows = [tuple(r) for r in conn.execute(query, {"start": start, "end": end}).fetchall()]
    conn.commit()
    columns = (table.client, table.access_type, table.accessed_by, table.at, table.ip_address, table.purpose)
    return AuditResult(start, end, columns, query.as_string(None).strip(), rows)


def count_in_window(conn: psycopg.Connection[Any], table: AccessLogTable, start: dt.datetime,
                    end: dt.datetime) -> tuple[int, str]:
    """An independent count(*) of the access log over the window, and its statement."""
    _, total = _queries(table)
    row = conn.execute(total, {"start": start, "end": end}).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0]), total.as_string(None)


def _cell(value: object) -> str:
    if isinstance(value, dt.datetime):
        return iso(value) or ""
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
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
    lines += [TIMELINE_HEADING, ""]
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
    lines += [f"- accepted by the relay {iso(n.accepted_at)} via {n.relay} for {', '.join(n.recipients)} (SMTP proves "
              f"acceptance, not delivery); message {n.message_id}; body sha256 {n.body_sha256}"] if n else [
        f"- not accepted by the relay: {record.notification_error}"
                                                        if record.notification_error else "- not sent in this run"]
    lines += ["", f"## Audit of the access log over the incident window ({len(audit_result.rows)} rows)", "",
              "```sql", audit_result.query, "```", ""]
    lines += _table(audit_result.columns, audit_result.rows[:MAX_AUDIT_ROWS_IN_DOCUMENT])
    if len(audit_result.rows) > MAX_AUDIT_ROWS_IN_DOCUMENT:
        lines.append(f"\n({len(audit_result.rows) - MAX_AUDIT_ROWS_IN_DOCUMENT} more rows in the evidence)")
    lines += ["", "## Root cause", "", narrative.root_cause or "_not yet determined_", "",
              "## Preventive measures", ""]
    lines += [f"- {m}" for m in narrative.preventive_measures] or ["_none recorded yet_"]
    lines += ["", "## Security measures reviewed (as declared by the operator)", ""]
    lines += _table(("area", "who", "when", "outcome"), list(narrative.security_rows()))
    return "\n".join(lines) + "\n"


def timeline_rows(text: str) -> list[str]:
    """The rows of the document's timeline table."""
    section = text.split(TIMELINE_HEADING, 1)[1].split("\n## ", 1)[0] if TIMELINE_HEADING in text else ""
    return [line for line in section.splitlines() if line.startswith("| 20")]


def write_document(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DOCUMENT_NAME
    path.write_text(text)
    return path


# --- the steps of the post-incident actions -------------------------------------------------------------------------

@dataclass(frozen=True)
class IncidentOptions:
    """What the operator gave: the incident window (None: the 24 hours before the run .. now, a rehearsal's
    default), the narrative, and the change."""

    start: dt.datetime | None
    end: dt.datetime | None
    narrative: Narrative
    change_id: str | None
    approver: str | None
    window_source: str
    narrative_source: str


@dataclass
class PostIncident:
    """features/emergency/post_incident.feature."""

    deployment: Deployment
    access_log: AccessLogTable
    incident: IncidentRecord
    options: IncidentOptions
    window: tuple[dt.datetime, dt.datetime] | None = None
    result: AuditResult | None = None
    text: str = ""

    def _window(self) -> tuple[dt.datetime, dt.datetime]:
        require(self.window is not None, "no incident window was named in this run")
        assert self.window is not None
        return self.window

    def _audit(self) -> AuditResult:
        require(self.result is not None, "the audit query has not run in this run")
        assert self.result is not None
        return self.result

    # Given the incident window the operator named
    def name_window(self, evidence: Evidence) -> None:
        start = populations.to_millisecond(self.options.start or self.incident.started_at - dt.timedelta(hours=24))
        end = populations.to_millisecond(self.options.end or utc_now())
        self.window = (start, end)
        evidence.record("incident window", {"start": iso(start), "end": iso(end)}, source=self.options.window_source)
        require(start <= end, f"the incident window ends ({iso(end)}) before it starts ({iso(start)})")

    # When the runbook's audit query runs over the incident window
    def run_audit(self, evidence: Evidence) -> None:
        start, end = self._window()
        with connect(self.deployment.dsn) as conn:
            self.result = audit(conn, self.access_log, start, end)
        evidence.record("audit of the access log", self.result.as_evidence(), source=self.result.query)

    # Then the audit lists every access in the incident window
    def check_audit_complete(self, evidence: Evidence) -> None:
        result = self._audit()
        with connect(self.deployment.dsn) as conn:
            total, query = count_in_window(conn, self.access_log, result.start, result.end)
        evidence.population("access log rows in the incident audit", len(result.rows), total, source=query, query=populations.in_window(query, result.start, result.end, subject=self.access_log.table))  # noqa: E501
        require(len(result.rows) == total, f"the audit lists {len(result.rows)} of {total} accesses in the window")

    # When the incident report is written to the run's report folder
    def write_report(self, evidence: Evidence) -> None:
        start, end = self._window()
        self.incident.note("incident report written")
        context = IncidentContext(start, end, self.deployment.operator, self.options.approver, self.options.change_id,
                                  self.deployment.target)
        self.text = render(self.incident, context, self._audit(), self.options.narrative)
        evidence.attach(DOCUMENT_NAME, self.text)  # into the run folder, under the signed manifest
        self.incident.report_document = DOCUMENT_NAME
        evidence.record("incident report", {"file": DOCUMENT_NAME, "timeline events": len(self.incident.events),
                                            "sha256": hashlib.sha256(self.text.encode()).hexdigest(),
                                            "narrative from": self.options.narrative_source},
                        source="rotation.emergency.post_incident.render -> the run folder (listed in manifest.json)")

    # Then the incident report's timeline consists of this run's own timestamps
    def check_timeline(self, evidence: Evidence) -> None:
        rows, events = timeline_rows(self.text), self.incident.timeline()
        evidence.record("timeline", {"rows": len(rows), "events recorded": len(events)},
                        source=f"{DOCUMENT_NAME}: {TIMELINE_HEADING.lstrip('# ')}")
        require(bool(events), "the run recorded no events")
        require(len(rows) == len(events), f"the timeline has {len(rows)} rows for {len(events)} recorded events")
        now = utc_now()
        for row, event in zip(rows, events, strict=True):
            require(row.startswith(f"| {iso(event.at)} |"), f"timeline row {row!r} is not the run's event at "
                                                             f"{iso(event.at)}")
            require(self.incident.started_at <= event.at <= now, f"the event at {iso(event.at)} lies outside the "
                                                                  "response")

    # Then the incident report states time to revoke and time to restore for every rotated credential
    def check_times(self, evidence: Evidence) -> None:
        outcomes = list(self.incident.outcomes.values())
        evidence.record("time to revoke and restore", [o.as_evidence() for o in outcomes],
                        source="the run's own clock at each step (a resumed rotation: the rotation state's times)")
        lines = self.text.splitlines()
        for o in outcomes:
            require(o.time_to_revoke is not None, f"{o.credential_type} was not revoked in this run")
            require(o.time_to_restore is not None, f"{o.credential_type}: the service was not restored in this run")
            line = next((ln for ln in lines if ln.startswith(f"| {o.credential_type} |")), "")
            require(str(iso(o.revoked_at)) in line and str(iso(o.restored_at)) in line,
                    f"the report's row for {o.credential_type} lacks its revoke and restore times")

    # Then the incident report records the root cause and the preventive measures
    def check_narrative(self, evidence: Evidence) -> None:
        narrative = self.options.narrative
        evidence.record("root cause and preventive measures", {"root cause": narrative.root_cause,
                                                               "preventive measures": list(
                                                                   narrative.preventive_measures)},
                        source=self.options.narrative_source)
        evidence.record("security measures reviewed (as declared by the operator)",
                        [dict(zip(("area", "who", "when", "outcome"), row, strict=True))
                         for row in narrative.security_rows()],
                        source=f"{self.options.narrative_source} (security_review): recorded as declared, not checked "
                               "by the tool")
        require(not narrative.missing(), f"the incident report lacks: {', '.join(narrative.missing())} "
                                         "(--root-cause, --preventive-measure or --incident-notes FILE)")
        require(narrative.root_cause in self.text and all(m in self.text for m in narrative.preventive_measures),
                "the incident report does not carry the root cause and every preventive measure")


# --- the incident as the print shows it (rotation.evidence.incident) -------------------------------------------------

def print_record(record: IncidentRecord, narrative: Narrative | None, narrative_source: str) -> dict[str, object]:
    """The incident record (every run of it) as one structured evidence item, which the print (index.html) renders as
    its incident section: the same facts as the ledger and the closing lines, nothing computed anew but the
    differences of recorded times and their comparison with the runbook's one-hour target."""
    origin = f"--detected-at {iso(record.detected_at)}" if record.detected_at else \
        "the start of each rotation (no --detected-at given)"
    return {
        "change id": record.change_id, "status": "COMPLETE" if record.complete else "IN PROGRESS",
        "runs": len(record.runs), "detected at": iso(record.detected_at), "measured from": origin,
        "target": f"within {hms(IMMEDIATE_TARGET)} of detection (runbook: Emergency Rotation Procedure, "
                  "Immediate Actions (Within 1 Hour))",
        "credentials": [_credential_row(o, record.statuses().get(o.credential_type, o.status))
                        for o in record.outcomes.values()]
        + [{"credential": t, "status": s} for t, s in record.statuses().items() if t not in record.outcomes],
        "timeline": [{"at": iso(e.at), "event": e.what} for e in record.timeline()],
        "access review": _review_rows(record),
        "root cause": narrative.root_cause if narrative else None,
        "preventive measures": list(narrative.preventive_measures) if narrative else [],
        "security review": [dict(zip(("area", "who", "when", "outcome"), row, strict=True))
                            for row in narrative.security_rows()] if narrative else [],
        "declared in": narrative_source,
    }


def _credential_row(o: CredentialOutcome, status: str) -> dict[str, object]:
    start = o.detected_at or o.started_at
    to_restore = o.restored_at - start if o.restored_at else None
    return {"credential": o.credential_type, "status": status, "clock from": iso(start),
            "revoked at": iso(o.revoked_at), "time to revoke": hms(o.time_to_revoke),
            "revoke target": target_verdict(o.time_to_revoke, "not revoked"),
            "restored at": iso(o.restored_at), "time to restore": hms(to_restore),
            "restore target": target_verdict(to_restore, "not restored"),
            "outage": hms(o.time_to_restore), "outage from": iso(o.outage_from),
            "old credential": o.old_fp, "new credential": o.new_fp}


def _review_rows(record: IncidentRecord) -> dict[str, object]:
    if record.review is None:
        return {"ran": False, "summary": "the access review did not run in this run", "findings": []}
    findings = [f.line() for f in record.review.flagged] + [f"volume: {v.line()}" for v in record.review.volume]
    return {"ran": True, "summary": record.review.summary(), "count": len(findings), "findings": findings}
