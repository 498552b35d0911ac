"""index.html: one self-contained page (inline CSS, no script) an auditor can read on screen, e-mail or print.

Printed (A4, Chromium's print-to-PDF), a DB-key run of 7 scenarios fits in 12 pages: the feature's text once per
feature, each step kept with its evidence, values wrapped (never clipped), times in ISO 8601 UTC, and no temporary
paths (a staging world's temp directory is shown as `<tmp>/…`). Long values are cut in the page at a stated length;
evidence.jsonl, the system of record, keeps them whole and the page names the line."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from jinja2 import Environment, PackageLoader, select_autoescape

from rotation.core.proof import PopulationQuery
from rotation.evidence.auditor import plain, sampled_rotations, stamp
from rotation.evidence.metadata import RunMetadata
from rotation.evidence.recorder import CLOSING_PREFIX, EvidenceItem, Population, ScenarioRecord, StepRecord
from rotation.evidence.summary import Summary

MAX_VALUE_CHARS = 240  # longer values are cut in the page; evidence.jsonl keeps them whole
MAX_SOURCE_CHARS = 140
TEMP_ROOTS = sorted({tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"}, key=len, reverse=True)  # noqa: S108
TEMP_PATH = re.compile("(?:" + "|".join(re.escape(r) for r in TEMP_ROOTS) + r")(?:/[^\s\"'<>,;)\]}|]*)?")


def scrub(text: str) -> str:
    """Free text in the page (reasons, errors, closing lines): no temporary path, times in the one UTC format."""
    return utc_stamps(scrub_paths(text))


def scrub_paths(text: str) -> str:
    """A temporary path (a staging world, pytest's tmp_path) as `<tmp>/…/<last two parts>`: what it names, not
    where a throwaway directory happened to be."""
    def short(match: re.Match[str]) -> str:
        parts = [p for p in match.group(0).split("/") if p][1:]
        return "<tmp>/" + ("…/" if len(parts) > 2 else "") + "/".join(parts[-2:])
    return TEMP_PATH.sub(short, text)


STAMP = re.compile(r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?")


EPOCH = re.compile(r"(?<![\d.])1[5-9]\d{8}\.\d+(?![\d.])")  # a Unix time with a fraction (an app's env_loaded_at)


def utc_stamps(text: str) -> str:
    """Every date-time in a value (a log row's `2026-03-01 10:00:00.123456+00:00`, an offset time, a Unix time with
    a fraction) in the print's one UTC format.
    A time without an offset is taken as UTC: the suite's sessions and the rotation log use UTC."""
    def utc(match: re.Match[str]) -> str:
        try:
            moment = datetime.fromisoformat(match.group(0).replace("Z", "+00:00"))
        except ValueError:
            return match.group(0)
        return iso_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return EPOCH.sub(lambda m: iso_time(datetime.fromtimestamp(float(m.group(0)), UTC)), STAMP.sub(utc, text))


def iso_time(moment: datetime | None) -> str:
    """The print's one time format, UTC to the millisecond: 2026-03-01 10:00:00.123Z (auditor.stamp)."""
    return "not run" if moment is None else stamp(moment)


def clock(moment: datetime | None) -> str:
    """The time of day in UTC (the date is in the scenario's header): 10:00:00.123Z."""
    return "" if moment is None else iso_time(moment).split(" ", 1)[1]


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def _compact(value: object) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_compact(v)}" for k, v in value.items()) if value else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_compact(v) for v in value) + "]"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _cut(text: str, limit: int, line: int | None) -> str:
    if len(text) <= limit:
        return text
    where = f"evidence.jsonl line {line}" if line else "evidence.jsonl"
    cut = text.rfind(" ", limit // 2, limit)  # at a space: never halfway through a time or a path
    cut = cut if cut > 0 else limit
    return text[:cut] + f" … ({len(text) - cut:,} more characters in {where})"


def show_value(value: object, line: int | None = None) -> str:
    """A value as compact text: a mapping as `key: value; key: value`, one line per top-level key."""
    if isinstance(value, dict):
        text = "\n".join(f"{k}: {_compact(v)}" for k, v in value.items()) or "{}"
    else:
        text = _compact(value)
    return _cut(utc_stamps(scrub_paths(text)), MAX_VALUE_CHARS, line)


def show_source(source: str | None, line: int | None = None) -> str:
    return _cut(utc_stamps(scrub_paths(" ".join((source or "").split()))), MAX_SOURCE_CHARS, line)


INTERNAL_TAGS = frozenset({"xdist_group", "staging_only"})  # how the suite schedules a scenario, not what it evidences


def shown_tags(tags: list[str]) -> list[str]:
    return [t for t in tags if t not in INTERNAL_TAGS]


def anchor(nodeid: str) -> str:
    return "sc-" + re.sub(r"[^A-Za-z0-9_-]+", "-", nodeid).strip("-")


def step_line(step: StepRecord) -> str:
    return f"{step.keyword} {step.text}"


@dataclass(frozen=True)
class FeatureGroup:
    """The scenarios of one feature in one procedure: the feature's text is printed once, above them."""

    name: str
    file: str
    description: str
    background: list[str]
    scenarios: list[ScenarioRecord]


def feature_groups(scenarios: list[ScenarioRecord]) -> list[FeatureGroup]:
    groups: dict[str, list[ScenarioRecord]] = {}
    for s in scenarios:
        groups.setdefault(s.feature_file, []).append(s)
    out = []
    for file, members in groups.items():
        first = members[0]
        background = [step_line(st) for st in first.steps if st.background]
        description = " ".join(line.strip() for line in first.feature_description.splitlines() if line.strip())
        out.append(FeatureGroup(first.feature, file, description, background, members))
    return out


@dataclass(frozen=True)
class TableFigures:
    """One encrypted table's reconciliation and what each key opens, side by side (identical rows of several
    scenarios once, with their count)."""

    subject: str
    reconciliation: str
    reads: tuple[str, ...]
    complete: bool
    scenarios: int = 1


def reconciliations(populations: list[Population]) -> list[TableFigures]:
    by_subject: dict[str, list[Population]] = {}
    for p in populations:
        if p.query is not None and p.reconciliation() is not None:
            by_subject.setdefault(f"{p.scenario}\0{p.query.subject}", []).append(p)
    rows: dict[TableFigures, int] = {}
    for pops in by_subject.values():
        row = TableFigures(pops[0].query.subject if pops[0].query else "", pops[0].reconciliation() or "",
                           tuple(p.reads() for p in pops), all(p.complete and p.reconciles for p in pops))
        rows[row] = rows.get(row, 0) + 1
    return [TableFigures(r.subject, r.reconciliation, r.reads, r.complete, n) for r, n in rows.items()]


def population_groups(populations: list[Population], names: dict[str, str]) -> list[tuple[str, list[Population]]]:
    """The figures by scenario, in the order the run recorded them."""
    groups: dict[str, list[Population]] = {}
    for p in populations:
        groups.setdefault(p.scenario or "", []).append(p)
    return [(names.get(key, "outside any scenario"), pops) for key, pops in groups.items()]


def query_key(query: PopulationQuery) -> str:
    return query.sql


def distinct_queries(populations: list[Population]) -> list[tuple[str, PopulationQuery]]:
    """Each population statement once (several figures come from the same statement with other psql variables)."""
    found: dict[str, PopulationQuery] = {}
    for p in populations:
        if p.query is not None:
            found.setdefault(query_key(p.query), p.query)
    return list(found.items())


def selection_text(meta: RunMetadata) -> str:
    parts = [f"{meta.selected} selected, {meta.deselected} deselected"]
    if meta.mark_expression:
        parts.append(f"-m '{meta.mark_expression}'")
    if meta.keyword_expression:
        parts.append(f"-k '{meta.keyword_expression}'")
    return "; ".join(parts)


def counts_text(summary: Summary) -> str:
    c = summary.counts
    total = len(summary.scenarios)
    parts = [f"{c[k]} {k}" for k in ("passed", "failed", "error", "skipped", "not run") if c[k]]
    return f"{total} scenario{'s' if total != 1 else ''}: " + ", ".join(parts)


def render(meta: RunMetadata, summary: Summary, *, run_name: str, seq_of: dict[int, int], public_key_pem: str,
           run_items: list[EvidenceItem], files: Iterable[str], secret_count: int) -> str:
    env = Environment(loader=PackageLoader("rotation.evidence", "templates"), autoescape=select_autoescape(["j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(iso_time=iso_time, clock=clock, fmt_duration=fmt_duration, show_value=show_value,
                       show_source=show_source, item_id=id, scrub=scrub, feature_groups=feature_groups, plain=plain,
                       shown_tags=shown_tags)
    duration = (meta.finished - meta.started).total_seconds() if meta.finished else None
    live = meta.target == "live"
    closings = [i for i in run_items if i.name.startswith(CLOSING_PREFIX)]
    queries = distinct_queries(summary.populations)
    context = {
        "meta": meta, "summary": summary, "run_name": run_name, "seq_of": seq_of, "public_key_pem": public_key_pem,
        "run_items": [i for i in run_items if i not in closings], "closings": closings,
        "closing_prefix": CLOSING_PREFIX, "files": sorted(files), "secret_count": secret_count,
        "controls": summary.controls(), "anchors": {s.nodeid: anchor(s.nodeid) for s in summary.scenarios},
        "scenario_names": {s.nodeid: s.name for s in summary.scenarios},
        "tables": reconciliations(summary.populations), "queries": queries,
        "query_ids": {key: f"Query {n}" for n, (key, _) in enumerate(queries, start=1)}, "query_key": query_key,
        "counts_text": counts_text(summary), "selection_text": selection_text(meta),
        "duration_text": fmt_duration(duration), "started_text": iso_time(meta.started),
        "finished_text": iso_time(meta.finished), "live": live,
        "per_run_key": not meta.signing_key.startswith("configured"),
        "approver_text": meta.approver or ("MISSING" if live else "not required (staging rehearsal)"),
        "change_text": meta.change_id or ("MISSING" if live else "not required (staging rehearsal)"),
        "invocation": scrub_paths(" ".join(meta.invocation)),
        "rotations": sampled_rotations(summary.scenarios, seq_of),
        "population_groups": population_groups(summary.populations, {s.nodeid: s.name for s in summary.scenarios}),
        "target_label": "LIVE" if live else f"REHEARSAL ({meta.target.upper()})",
        "signed_files": sorted(set(files) - {"manifest.json", "manifest.sig"}),
    }
    return env.get_template("report.html.j2").render(**context)
