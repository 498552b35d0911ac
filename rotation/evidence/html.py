"""index.html: one self-contained page (inline CSS, no script) an auditor can read on screen, e-mail or print."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime

from jinja2 import Environment, PackageLoader, select_autoescape

from rotation.evidence.metadata import RunMetadata
from rotation.evidence.recorder import EvidenceItem, ScenarioRecord, StepRecord
from rotation.evidence.summary import Summary

MAX_VALUE_CHARS = 6000  # longer values are cut in the page; evidence.jsonl keeps them whole


def fmt_time(moment: datetime | None) -> str:
    return "not run" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def show_value(value: object) -> str:
    if isinstance(value, str):
        text = value
    else:  # short values on one line, longer ones indented so an auditor can read them
        text = json.dumps(value, ensure_ascii=False)
        if len(text) > 90:
            text = json.dumps(value, indent=2, ensure_ascii=False)
    if len(text) > MAX_VALUE_CHARS:
        return text[:MAX_VALUE_CHARS] + f"\n… ({len(text) - MAX_VALUE_CHARS:,} more characters in evidence.jsonl)"
    return text


def gherkin_text(s: ScenarioRecord) -> str:
    """The scenario as Gherkin, with outline values filled in as they ran."""
    lines = [f"Feature: {s.feature}"]
    lines += [f"  {line.strip()}" for line in s.feature_description.splitlines() if line.strip()]
    background = [st for st in s.steps if st.background]
    if background:
        lines += ["", "  Background:"] + [f"    {line}" for st in background for line in _step_lines(st)]
    lines += ["", "  " + " ".join(f"@{t}" for t in s.tags), f"  {s.keyword}: {s.name}"]
    lines += [f"    {line.strip()}" for line in s.description.splitlines() if line.strip()]
    if s.example:
        lines.append("    # Examples row: " + ", ".join(f"{k} = {v}" for k, v in s.example.items()))
    lines += [f"    {line}" for st in s.steps if not st.background for line in _step_lines(st)]
    return "\n".join(lines)


def _step_lines(step: StepRecord) -> list[str]:
    return [f"{step.keyword} {step.text}", *(f"  {line}" for line in (step.argument or "").splitlines())]


def anchor(nodeid: str) -> str:
    return "sc-" + re.sub(r"[^A-Za-z0-9_-]+", "-", nodeid).strip("-")


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
    env.globals.update(fmt_time=fmt_time, fmt_duration=fmt_duration, show_value=show_value, item_id=id)
    duration = (meta.finished - meta.started).total_seconds() if meta.finished else None
    live = meta.target == "live"
    context = {
        "meta": meta, "summary": summary, "run_name": run_name, "seq_of": seq_of, "public_key_pem": public_key_pem,
        "run_items": run_items, "files": sorted(files), "secret_count": secret_count,
        "controls": summary.controls(), "anchors": {s.nodeid: anchor(s.nodeid) for s in summary.scenarios},
        "gherkin": {s.nodeid: gherkin_text(s) for s in summary.scenarios},
        "scenario_names": {s.nodeid: s.name for s in summary.scenarios},
        "counts_text": counts_text(summary), "selection_text": selection_text(meta),
        "duration_text": fmt_duration(duration), "started_text": fmt_time(meta.started),
        "finished_text": fmt_time(meta.finished),
        "approver_text": meta.approver or ("MISSING" if live else "not required (staging)"),
        "change_text": meta.change_id or ("MISSING" if live else "not required (staging)"),
    }
    return env.get_template("report.html.j2").render(**context)
