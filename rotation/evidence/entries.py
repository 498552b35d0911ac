"""The lines of evidence.jsonl: the run, then each scenario with its steps and items, then the verdict. Each item
gets its line number (from 1, the same as its `seq`), which the HTML and OSCAL cite (`evidence.jsonl#12`), so every
figure traces to a chained line."""

from __future__ import annotations

from rotation.evidence.metadata import RunMetadata
from rotation.evidence.recorder import EvidenceItem, ScenarioRecord, StepRecord, iso, query_dict
from rotation.evidence.summary import Summary


def item_entry(item: EvidenceItem, scenario: ScenarioRecord | None, step: StepRecord | None) -> dict[str, object]:
    return {"type": "evidence", "name": item.name, "value": item.value, "source": item.source,
            "collected": iso(item.collected), "scenario": scenario.nodeid if scenario else None,
            "step": f"{step.keyword} {step.text}" if step else None, "redacted": item.redacted}


def scenario_entry(s: ScenarioRecord) -> dict[str, object]:
    return {"type": "scenario", "nodeid": s.nodeid, "name": s.name, "feature": s.feature,
            "feature_file": s.feature_file, "line": s.line, "tags": s.tags, "status": s.status, "reason": s.reason,
            "start": iso(s.start), "end": iso(s.end), "duration_s": s.duration_s}


def step_entry(s: ScenarioRecord, step: StepRecord) -> dict[str, object]:
    return {"type": "step", "scenario": s.nodeid, "keyword": step.keyword, "text": step.text, "line": step.line,
            "background": step.background, "status": step.status, "error": step.error, "start": iso(step.start),
            "end": iso(step.end), "duration_s": step.duration_s}


def build_entries(meta: RunMetadata, summary: Summary,
                  run_items: list[EvidenceItem]) -> tuple[list[dict[str, object]], dict[int, int]]:
    """The chain's entries and, for each evidence item (by id()), its line number in evidence.jsonl (from 1)."""
    entries: list[dict[str, object]] = [{"type": "run", **meta.as_dict()}]
    seq_of: dict[int, int] = {}

    def add_item(item: EvidenceItem, scenario: ScenarioRecord | None, step: StepRecord | None) -> None:
        seq_of[id(item)] = len(entries) + 1
        entries.append(item_entry(item, scenario, step))

    for item in run_items:
        add_item(item, None, None)
    for scenario in summary.scenarios:
        entries.append(scenario_entry(scenario))
        for item in scenario.items:
            add_item(item, scenario, None)
        for step in scenario.steps:
            entries.append(step_entry(scenario, step))
            for item in step.items:
                add_item(item, scenario, step)
    for pop in summary.populations:
        entries.append({"type": "population", "label": pop.label, "verified": pop.verified, "total": pop.total,
                        "sentence": pop.sentence(), "reads": pop.reads(), "reconciliation": pop.reconciliation(),
                        "source": pop.source, "scenario": pop.scenario, "collected": iso(pop.collected),
                        "query": query_dict(pop.query)})
    entries.append({"type": "verdict", "verdict": summary.verdict, "reasons": summary.verdict_reasons(),
                    "counts": dict(summary.counts),
                    "incomplete": [{"scenario": s.nodeid, "name": s.name, "status": s.status, "reason": s.reason}
                                   for s in summary.incomplete],
                    "controls": {c.control.id: c.status for c in summary.controls()}})
    return entries, seq_of
