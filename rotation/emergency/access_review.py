"""Runbook "Emergency Rotation Procedure", step 4, Verify No Unauthorized Access: the runbook's two queries over the
data access log and the communications sent (`crm_data_access_log`, `crm_communications`: the configuration's
`[access_review]` tables and columns), turned into a review that flags what a person must look at.

A row of the access log is flagged when any of these holds (each flag carries its reason):
  - its `accessed_by` matches no entry of the accessor allowlist (exact names; `*` matches any run of characters);
  - its `ip_address` lies outside every allowed network (a NULL address is flagged only if the policy says so);
  - its `access_type` is one the policy always reviews (default: export and delete).
Volume is judged per accessor and in total: the count in the window against the mean count per window-length over the
previous `baseline_days`; flagged when at least `min_volume` and above `volume_factor` times that mean.

A communication counts as sent when its status is one of SENT_STATUSES. It counts as originated by the app when
  - `metadata->>'<origin_key>'` is one of the app's origin markers (default key "origin", marker
    "crm-communication-engine": the engine stamps every row it writes), and
  - it has a `template_name` (the engine renders every message from a template), and, when the policy names the
    app's templates, that template is one of them.
Any sent row failing one of these is flagged as not originated by the app, with the failing condition as the reason.
Rows written straight into the table (psql, a stolen DB credential) carry no marker; messages sent with a stolen
provider token never reach this table at all: they show only in the provider's own logs (see docs/emergency.md).

Classification runs in PostgreSQL (bound parameters only), so a large log is counted in full and only flagged rows
travel. Message bodies never leave the database: a finding names the row, never its content.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from rotation.core.database import connect
from rotation.core.errors import RotationError
from rotation.core.proof import Evidence, require
from rotation.core.yamlfile import load_mapping
from rotation.emergency import populations

DEFAULT_WINDOW = dt.timedelta(hours=24)
SENT_STATUSES = ("sent", "delivered", "opened", "clicked", "bounced")
APP_ORIGIN_KEY = "origin"
APP_ORIGIN_MARKER = "crm-communication-engine"
MAX_LISTED = 500

if TYPE_CHECKING:
    from rotation.emergency.incident import IncidentRecord


class PolicyError(RotationError, ValueError):
    """The review policy is missing or malformed."""


@dataclass(frozen=True)
class ReviewPolicy:
    """What counts as normal. Staging builds one from the seeder's constants; live reads it from a YAML file."""

    allowed_accessors: tuple[str, ...]
    allowed_networks: tuple[str, ...]
    window: dt.timedelta = DEFAULT_WINDOW
    review_access_types: tuple[str, ...] = ("export", "delete")
    flag_missing_ip: bool = False
    baseline_days: int = 7
    volume_factor: float = 3.0
    min_volume: int = 50
    origin_key: str = APP_ORIGIN_KEY
    origin_markers: tuple[str, ...] = (APP_ORIGIN_MARKER,)
    app_templates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for net in self.allowed_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise PolicyError(f"allowed network {net!r} is not a network (e.g. 10.20.0.0/16)") from None
        if self.window <= dt.timedelta(0):
            raise PolicyError("the review window must be positive")
        if self.baseline_days < 1 or self.volume_factor <= 0 or self.min_volume < 1:
            raise PolicyError("baseline_days and min_volume must be at least 1, volume_factor above 0")

    def summary(self) -> dict[str, object]:
        return {"window_hours": self.window.total_seconds() / 3600, "allowed_accessors": list(self.allowed_accessors),
                "allowed_networks": list(self.allowed_networks), "review_access_types": list(self.review_access_types),
                "flag_missing_ip": self.flag_missing_ip, "baseline_days": self.baseline_days,
                "volume_factor": self.volume_factor, "min_volume": self.min_volume,
                "app_origin": f"metadata->>'{self.origin_key}' in {list(self.origin_markers)} and template_name set"
                              + (f" and in {list(self.app_templates)}" if self.app_templates else "")}


def _strings(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PolicyError(f"{name} must be a list of strings")


def policy_from_mapping(data: Mapping[str, Any], *, window: dt.timedelta | None = None) -> ReviewPolicy:
    """A policy from a parsed YAML/JSON mapping; unknown keys are refused so a typo cannot silently widen it."""
    known = {"allowed_accessors", "allowed_networks", "window_hours", "review_access_types", "flag_missing_ip",
             "baseline_days", "volume_factor", "min_volume", "origin_key", "origin_markers", "app_templates"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PolicyError(f"unknown review policy keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {
        "allowed_accessors": _strings(data.get("allowed_accessors"), "allowed_accessors"),
        "allowed_networks": _strings(data.get("allowed_networks"), "allowed_networks"),
    }
    if "review_access_types" in data:
        kwargs["review_access_types"] = _strings(data["review_access_types"], "review_access_types")
    if "origin_markers" in data:
        kwargs["origin_markers"] = _strings(data["origin_markers"], "origin_markers")
    if "app_templates" in data:
        kwargs["app_templates"] = _strings(data["app_templates"], "app_templates")
    for key, kind in (("flag_missing_ip", bool), ("baseline_days", int), ("volume_factor", float),
                      ("min_volume", int), ("origin_key", str)):
        if key in data:
            try:
                kwargs[key] = kind(data[key])
            except (TypeError, ValueError):
                raise PolicyError(f"{key} must be a {kind.__name__}") from None
    if window is not None:
        kwargs["window"] = window
    elif "window_hours" in data:
        kwargs["window"] = dt.timedelta(hours=float(data["window_hours"]))
    return ReviewPolicy(**kwargs)


def load_policy(path: Path, *, window: dt.timedelta | None = None) -> ReviewPolicy:
    data = load_mapping(path, PolicyError, "the review policy", " (allowed_accessors, allowed_networks, ...)")
    return policy_from_mapping(data, window=window)


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime

    def label(self) -> str:
        return f"({populations.iso_ms(self.start)}, {populations.iso_ms(self.end)}]"


@dataclass(frozen=True)
class FlaggedRow:
    """One row a person must look at, without message content."""

    source: str  # the table: the access log or the communications
    row_id: str
    at: dt.datetime
    fields: dict[str, object]
    reasons: tuple[str, ...]

    def line(self) -> str:
        what = ", ".join(f"{k}={v}" for k, v in self.fields.items() if v not in (None, ""))
        return f"{self.at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}Z {self.source} {self.row_id}: {what} -- " \
               + "; ".join(self.reasons)

    def as_evidence(self) -> dict[str, object]:
        return {"source": self.source, "row_id": self.row_id, "at": self.at.astimezone(dt.UTC).isoformat(),
                **{k: str(v) if v is not None else None for k, v in self.fields.items()}, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class VolumeFinding:
    source: str
    subject: str  # an accessor, a channel, or "all"
    in_window: int
    baseline_per_window: float

    def line(self) -> str:
        return (f"{self.source}: {self.subject} has {self.in_window} rows in the window, "
                f"{self.in_window / self.baseline_per_window:.1f}x the baseline of {self.baseline_per_window:.1f}"
                if self.baseline_per_window else
                f"{self.source}: {self.subject} has {self.in_window} rows in the window and none in the baseline")

    def as_evidence(self) -> dict[str, object]:
        return {"source": self.source, "subject": self.subject, "in_window": self.in_window,
                "baseline_per_window": round(self.baseline_per_window, 2)}


# --- the tables, from the configuration's [access_review] ------------------------------------------------------------

@dataclass(frozen=True)
class AccessLogTable:
    """[access_review.access_log]: who read or changed which client's data, when, from where."""

    table: str
    id: str
    client: str
    access_type: str
    accessed_by: str
    at: str
    ip_address: str
    purpose: str


@dataclass(frozen=True)
class CommunicationsTable:
    """[access_review.communications]: the messages the CRM sent."""

    table: str
    id: str
    client: str
    channel: str
    status: str
    template: str
    metadata: str
    at: str


@dataclass(frozen=True)
class ReviewTables:
    access_log: AccessLogTable
    communications: CommunicationsTable

    @classmethod
    def from_config(cls, section: Mapping[str, Mapping[str, str]]) -> ReviewTables:
        return cls(_table(AccessLogTable, section, "access_log"), _table(CommunicationsTable, section,
                                                                         "communications"))


def _table(kind: type[Any], section: Mapping[str, Mapping[str, str]], name: str) -> Any:
    names = [f.name for f in fields(kind)]
    given = section.get(name, {})
    missing = [n for n in names if not given.get(n)]
    if missing:
        raise PolicyError(f"the configuration's [access_review.{name}] lacks {', '.join(missing)} "
                          f"(it needs: {', '.join(names)})")
    return kind(**{n: given[n] for n in names})


def identifier(name: str) -> sql.Identifier:
    """A configured table or column name (schema.table allowed), always quoted: never spliced in as text."""
    return sql.Identifier(*name.split("."))


def _identifiers(table: AccessLogTable | CommunicationsTable) -> dict[str, sql.Identifier]:
    return {f.name: identifier(getattr(table, f.name)) for f in fields(table)}


@dataclass(frozen=True)
class ReviewResult:
    window: Window
    access_rows_reviewed: int
    communications_reviewed: int
    access_flagged_total: int
    communications_flagged_total: int
    flagged: tuple[FlaggedRow, ...]
    volume: tuple[VolumeFinding, ...]
    policy: ReviewPolicy
    access_table: str = "crm_data_access_log"
    communications_table: str = "crm_communications"
    queries: dict[str, str] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.access_flagged_total or self.communications_flagged_total or self.volume)

    def summary(self) -> str:
        return (f"reviewed {self.access_rows_reviewed} {self.access_table} rows and {self.communications_reviewed} "
                f"sent {self.communications_table} rows over {self.window.label()}: {self.access_flagged_total} "
                f"access rows, {self.communications_flagged_total} communications and {len(self.volume)} volume "
                "anomalies flagged")

    def lines(self) -> list[str]:
        out = [self.summary()]
        out += [f"  {f.line()}" for f in self.flagged]
        shown = len(self.flagged)
        total = self.access_flagged_total + self.communications_flagged_total
        if shown < total:
            out.append(f"  ... {total - shown} more flagged rows not listed (query in the evidence)")
        out += [f"  VOLUME {v.line()}" for v in self.volume]
        return out

    def as_evidence(self) -> dict[str, object]:
        return {"window": {"start": populations.iso_ms(self.window.start), "end": populations.iso_ms(self.window.end),
                           "interval": populations.WINDOW},
                "tables": [self.access_table, self.communications_table],
                "access_rows_reviewed": self.access_rows_reviewed,
                "communications_reviewed": self.communications_reviewed,
                "access_flagged": self.access_flagged_total,
                "communications_flagged": self.communications_flagged_total,
                "flagged_rows": [f.as_evidence() for f in self.flagged],
                "volume_anomalies": [v.as_evidence() for v in self.volume], "policy": self.policy.summary()}


# --- SQL (configured identifiers quoted, values bound) ----------------------------------------------------------------

ACCESS_FLAGS = """
SELECT {id}::text, {at}, {client}, {access_type}, {accessed_by}, host({ip_address}) AS ip, {purpose},
       NOT ({accessed_by} LIKE ANY(%(accessors)s::text[])) AS unknown_accessor,
       {ip_address} IS NOT NULL AND NOT ({ip_address} <<= ANY(%(networks)s::inet[])) AS ip_outside,
       {ip_address} IS NULL AND %(flag_missing_ip)s AS ip_missing,
       {access_type} = ANY(%(types)s::text[]) AS reviewed_type
FROM {table}
WHERE {at} > %(start)s AND {at} <= %(end)s
"""
ACCESS_FLAG_CONDITION = "unknown_accessor OR ip_outside OR ip_missing OR reviewed_type"
ACCESS_LIST = f"SELECT * FROM ({ACCESS_FLAGS}) a WHERE {ACCESS_FLAG_CONDITION} ORDER BY 2, 1 LIMIT %(limit)s"
ACCESS_COUNTS = f"""
SELECT count(*) AS reviewed, count(*) FILTER (WHERE {ACCESS_FLAG_CONDITION}) AS flagged FROM ({ACCESS_FLAGS}) a
"""

COMMS_FLAGS = """
SELECT {id}::text, {at}, {client}, {channel}, {status}, {template},
       {metadata} ->> %(origin_key)s AS origin,
       coalesce({metadata} ->> %(origin_key)s, '') <> ALL(%(markers)s::text[]) AS foreign_origin,
       {template} IS NULL AS no_template,
       {template} IS NOT NULL AND cardinality(%(templates)s::text[]) > 0
           AND {template} <> ALL(%(templates)s::text[]) AS unknown_template
FROM {table}
WHERE {at} > %(start)s AND {at} <= %(end)s AND {status} = ANY(%(statuses)s::text[])
"""
COMMS_FLAG_CONDITION = "foreign_origin OR no_template OR unknown_template"
COMMS_LIST = f"SELECT * FROM ({COMMS_FLAGS}) c WHERE {COMMS_FLAG_CONDITION} ORDER BY 2, 1 LIMIT %(limit)s"
COMMS_COUNTS = f"""
SELECT count(*) AS reviewed, count(*) FILTER (WHERE {COMMS_FLAG_CONDITION}) AS flagged FROM ({COMMS_FLAGS}) c
"""

ACCESS_VOLUME = """
SELECT {accessed_by} AS subject,
       count(*) FILTER (WHERE {at} > %(start)s) AS in_window,
       count(*) FILTER (WHERE {at} <= %(start)s) AS in_baseline
FROM {table}
WHERE {at} > %(baseline_start)s AND {at} <= %(end)s
GROUP BY {accessed_by}
"""
COMMS_VOLUME = """
SELECT {channel} AS subject,
       count(*) FILTER (WHERE {at} > %(start)s) AS in_window,
       count(*) FILTER (WHERE {at} <= %(start)s) AS in_baseline
FROM {table}
WHERE {at} > %(baseline_start)s AND {at} <= %(end)s AND {status} = ANY(%(statuses)s::text[])
GROUP BY {channel}
"""

# The independent counts a Then step compares the review's own figures with: plain count(*) over the same window.
ACCESS_TOTAL = "SELECT count(*) FROM {table} WHERE {at} > %(start)s AND {at} <= %(end)s"
COMMS_TOTAL = ("SELECT count(*) FROM {table} WHERE {at} > %(start)s AND {at} <= %(end)s "
               "AND {status} = ANY(%(statuses)s::text[])")


@dataclass(frozen=True)
class Queries:
    """The review's statements for one configuration's tables."""

    access_list: sql.Composed
    access_counts: sql.Composed
    access_volume: sql.Composed
    access_total: sql.Composed
    comms_list: sql.Composed
    comms_counts: sql.Composed
    comms_volume: sql.Composed
    comms_total: sql.Composed

    @classmethod
    def of(cls, tables: ReviewTables) -> Queries:
        a, c = _identifiers(tables.access_log), _identifiers(tables.communications)
        return cls(*(sql.SQL(text).format(**a) for text in (ACCESS_LIST, ACCESS_COUNTS, ACCESS_VOLUME, ACCESS_TOTAL)),
                   *(sql.SQL(text).format(**c) for text in (COMMS_LIST, COMMS_COUNTS, COMMS_VOLUME, COMMS_TOTAL)))

    def as_text(self) -> dict[str, str]:
        return {"access": self.access_list.as_string(None).strip(),
                "communications": self.comms_list.as_string(None).strip(),
                "access_volume": self.access_volume.as_string(None).strip(),
                "communications_volume": self.comms_volume.as_string(None).strip()}


def like_pattern(glob: str) -> str:
    """An allowlist entry as a LIKE pattern: `*` matches any run of characters; `%`, `_` and `\\` are literal."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def window_ending(conn: psycopg.Connection[Any], policy: ReviewPolicy, end: dt.datetime | None = None) -> Window:
    """The review window ending at `end` (default: the database's now(), the clock the rows were stamped with)."""
    if end is None:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        end = row[0]
    assert end is not None
    end = populations.to_millisecond(end)  # the evidence prints the bounds to the millisecond: count what it prints
    return Window(populations.to_millisecond(end - policy.window), end)


def _params(policy: ReviewPolicy, window: Window, limit: int) -> dict[str, object]:
    return {"start": window.start, "end": window.end, "limit": limit,
            "baseline_start": window.start - dt.timedelta(days=policy.baseline_days),
            "accessors": [like_pattern(a) for a in policy.allowed_accessors],
            "networks": list(policy.allowed_networks), "flag_missing_ip": policy.flag_missing_ip,
            "types": list(policy.review_access_types), "origin_key": policy.origin_key,
            "markers": list(policy.origin_markers), "templates": list(policy.app_templates),
            "statuses": list(SENT_STATUSES)}


def _access_row(row: tuple[Any, ...], table: str) -> FlaggedRow:
    log_id, at, client_id, access_type, accessed_by, ip, purpose, unknown, outside, missing, reviewed = row
    reasons = []
    if unknown:
        reasons.append(f"accessor {accessed_by!r} is not in the allowlist")
    if outside:
        reasons.append(f"IP {ip} is outside the allowed networks")
    if missing:
        reasons.append("no IP address recorded")
    if reviewed:
        reasons.append(f"{access_type} access (always reviewed)")
    return FlaggedRow(table, log_id, at, {"client_id": client_id, "access_type": access_type,
                                          "accessed_by": accessed_by, "ip": ip, "purpose": purpose}, tuple(reasons))


def _comms_row(row: tuple[Any, ...], policy: ReviewPolicy, table: str) -> FlaggedRow:
    cid, at, client_id, channel, status, template, origin, foreign, no_template, unknown_tpl = row
    reasons = []
    if foreign:
        reasons.append(f"not originated by the app: metadata.{policy.origin_key} is "
                       + (f"{origin!r}" if origin is not None else "missing"))
    if no_template:
        reasons.append("not originated by the app: no template")
    if unknown_tpl:
        reasons.append(f"not originated by the app: template {template!r} is not one of the app's templates")
    return FlaggedRow(table, cid, at, {"client_id": client_id, "channel": channel, "status": status,
                                       "template": template}, tuple(reasons))


def volume_findings(source: str, rows: Iterable[tuple[Any, ...]], policy: ReviewPolicy) -> list[VolumeFinding]:
    """Per subject and in total: flagged when in_window >= min_volume and > volume_factor x baseline mean."""
    windows_in_baseline = dt.timedelta(days=policy.baseline_days) / policy.window
    counted = [(str(r[0]), int(r[1]), int(r[2])) for r in rows]
    totals = ("all", sum(r[1] for r in counted), sum(r[2] for r in counted))
    found = []
    for subject, in_window, in_baseline in [*sorted(counted), totals]:
        mean = in_baseline / windows_in_baseline
        if in_window >= policy.min_volume and in_window > policy.volume_factor * mean:
            found.append(VolumeFinding(source, subject, in_window, mean))
    return found


def _one(conn: psycopg.Connection[Any], query: sql.Composed, params: Mapping[str, object]) -> tuple[Any, ...]:
    row = conn.execute(query, params).fetchone()
    assert row is not None  # an aggregate always returns a row
    return tuple(row)


def review(conn: psycopg.Connection[Any], policy: ReviewPolicy, *, tables: ReviewTables,
           end: dt.datetime | None = None, limit: int = MAX_LISTED) -> ReviewResult:
    """Run the review; read-only. Counts cover the whole window; at most `limit` flagged rows per table are listed."""
    window = window_ending(conn, policy, end)
    params = _params(policy, window, limit)
    q = Queries.of(tables)
    access_table, comms_table = tables.access_log.table, tables.communications.table
    access_reviewed, access_flagged = _one(conn, q.access_counts, params)
    comms_reviewed, comms_flagged = _one(conn, q.comms_counts, params)
    flagged = [_access_row(tuple(r), access_table) for r in conn.execute(q.access_list, params).fetchall()]
    flagged += [_comms_row(tuple(r), policy, comms_table) for r in conn.execute(q.comms_list, params).fetchall()]
    volume = volume_findings(access_table, conn.execute(q.access_volume, params).fetchall(), policy)
    volume += volume_findings(comms_table, conn.execute(q.comms_volume, params).fetchall(), policy)
    conn.commit()
    return ReviewResult(window, int(access_reviewed), int(comms_reviewed), int(access_flagged), int(comms_flagged),
                        tuple(sorted(flagged, key=lambda f: (f.at, f.row_id))), tuple(volume), policy,
                        access_table, comms_table, q.as_text())


def independent_counts(conn: psycopg.Connection[Any], tables: ReviewTables, window: Window) -> tuple[int, int]:
    """Plain count(*) of the access log rows and the sent messages in the window, to check the review against."""
    q = Queries.of(tables)
    params = {"start": window.start, "end": window.end, "statuses": list(SENT_STATUSES)}
    access, comms = _one(conn, q.access_total, params)[0], _one(conn, q.comms_total, params)[0]
    conn.commit()
    return int(access), int(comms)


# --- the steps of the access review -----------------------------------------------------------------------------------

@dataclass
class AccessReview:
    """features/emergency/access_review.feature, first scenario. The result goes into the incident record, which the
    notification and the incident report read."""

    dsn: str
    tables: ReviewTables
    policy: ReviewPolicy
    policy_source: str
    incident: IncidentRecord

    def _result(self) -> ReviewResult:
        require(self.incident.review is not None, "the access review has not run in this run")
        assert self.incident.review is not None
        return self.incident.review

    # Given the review policy names the allowed accessors, networks and the app's message markers
    def state_policy(self, evidence: Evidence) -> None:
        evidence.record("access review policy", self.policy.summary(), source=self.policy_source)
        evidence.record("tables reviewed", {"access log": self.tables.access_log.__dict__,
                                            "communications": self.tables.communications.__dict__},
                        source="the configuration's [access_review]")

    # When the data access log and the messages sent are reviewed over the review window
    def run(self, evidence: Evidence) -> None:
        with connect(self.dsn) as conn:
            result = review(conn, self.policy, tables=self.tables)
        self.incident.review = result
        self.incident.note(f"access review: {result.summary()}")
        evidence.record("access review", result.as_evidence(), source="\n\n".join(result.queries.values()))

    # Then the review states how many rows of each table it reviewed
    def check_counts(self, evidence: Evidence) -> None:
        result = self._result()
        with connect(self.dsn) as conn:
            access, sent = independent_counts(conn, self.tables, result.window)
        source = "; ".join(q.as_string(None) for q in (Queries.of(self.tables).access_total,
                                                        Queries.of(self.tables).comms_total))
        evidence.population(f"{result.access_table} rows reviewed in the window", result.access_rows_reviewed,
                            access, source=source, query=populations.in_window(Queries.of(self.tables).access_total.as_string(None), result.window.start, result.window.end, subject=result.access_table))  # noqa: E501
        evidence.population(f"sent {result.communications_table} rows reviewed in the window",
                            result.communications_reviewed, sent, source=source, query=populations.in_window(Queries.of(self.tables).comms_total.as_string(None), result.window.start, result.window.end, subject=result.communications_table, statuses=SENT_STATUSES))  # noqa: E501
        evidence.record("review summary", result.summary(), source="independent count(*) over the same window")
        require((result.access_rows_reviewed, result.communications_reviewed) == (access, sent),
                f"the review covered {result.access_rows_reviewed} of {access} access rows and "
                f"{result.communications_reviewed} of {sent} sent messages in the window")

    # Then no access and no message is flagged for investigation
    def check_nothing_flagged(self, evidence: Evidence) -> None:
        result = self._result()
        evidence.record("flagged for investigation", [f.as_evidence() for f in result.flagged]
                        + [v.as_evidence() for v in result.volume], source="rotation.emergency.access_review.review")
        require(result.clean, "unauthorized access cannot be ruled out; investigate:\n" + "\n".join(result.lines()))
