"""An OSCAL 1.1 assessment-results document: one observation per evidence item (and per scenario outcome), one
finding per assessed control. Built as plain JSON so the runtime needs no OSCAL library; the project's tests
validate it with compliance-trestle."""

from __future__ import annotations

import uuid
from datetime import datetime

from rotation.evidence.metadata import RunMetadata
from rotation.evidence.recorder import ScenarioRecord, iso
from rotation.evidence.summary import FAILING, ControlResult, Summary

OSCAL_VERSION = "1.1.2"


def _id() -> str:
    return str(uuid.uuid4())


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _scenario_observation(s: ScenarioRecord, fallback: datetime) -> dict[str, object]:
    reason = f" Reason: {s.reason}" if s.reason else ""
    return {"uuid": _id(), "title": _one_line(f"Scenario {s.status}: {s.name}"),
            "description": f"Scenario '{s.name}' ({s.feature_file}:{s.line}) {s.status}.{reason}",
            "methods": ["TEST"], "types": ["control-objective"], "collected": iso(s.end or s.start or fallback),
            "relevant-evidence": [{"href": "index.html", "description": f"scenario {s.nodeid}"}]}


def _item_observations(s: ScenarioRecord, seq_of: dict[int, int]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for step_text, items in [(None, s.items), *((f"{st.keyword} {st.text}", st.items) for st in s.steps)]:
        for item in items:
            where = f" in step '{step_text}'" if step_text else ""
            source = f" Source: {item.source}" if item.source else ""
            out.append({"uuid": _id(), "title": _one_line(item.name),
                        "description": f"Evidence '{item.name}' recorded{where} of scenario '{s.name}'.{source}",
                        "methods": ["TEST"], "collected": iso(item.collected),
                        "relevant-evidence": [{"href": f"evidence.jsonl#{seq_of.get(id(item), 0)}",
                                               "description": _one_line(f"{item.name}: line "
                                                                        f"{seq_of.get(id(item), 0)} of the chain")}]})
    return out


def _finding(result: ControlResult, related: list[str]) -> dict[str, object]:
    c = result.control
    failed = [s for s in result.scenarios if s.status in FAILING]
    target: dict[str, object] = {"type": "objective-id", "target-id": c.id, "title": _one_line(f"{c.label} {c.title}")}
    if result.status == "not applicable":
        target["implementation-status"] = {"state": "not-applicable"}
        description = c.applicability
    else:
        satisfied = result.status == "satisfied"
        target["status"] = {"state": "satisfied" if satisfied else "not-satisfied",
                            "reason": "pass" if satisfied else "fail"}
        description = (f"{result.passed} of {len(result.scenarios)} scenarios evidencing {c.label} passed."
                       + "".join(f" Failed: '{s.name}': {s.reason or 'no reason recorded'}." for s in failed))
    finding: dict[str, object] = {"uuid": _id(), "title": _one_line(f"{c.label}: {result.status}"),
                                  "description": description, "target": target}
    if related:
        finding["related-observations"] = [{"observation-uuid": u} for u in related]
    return finding


def assessment_results(meta: RunMetadata, summary: Summary, seq_of: dict[int, int]) -> dict[str, object]:
    finished = meta.finished or meta.started
    observations: list[dict[str, object]] = []
    per_scenario: dict[str, list[str]] = {}
    for s in summary.scenarios:
        obs = [_scenario_observation(s, finished), *_item_observations(s, seq_of)]
        observations += obs
        per_scenario[s.nodeid] = [o["uuid"] for o in obs]  # type: ignore[misc]
    assessed = [r for r in summary.controls() if r.status != "not assessed"]
    findings = [_finding(r, [u for s in r.scenarios for u in per_scenario.get(s.nodeid, [])]) for r in assessed]
    result: dict[str, object] = {
        "uuid": _id(), "title": f"Credential rotation runbook, {meta.target} run {iso(meta.started)}",
        "description": f"Verdict {summary.verdict}. Operator {meta.operator}; approver {meta.approver or 'n/a'}; "
                       f"change {meta.change_id or 'n/a'}; suite {meta.suite_version} at {meta.git_commit or 'n/a'}.",
        "start": iso(meta.started), "end": iso(finished),
        "reviewed-controls": {"control-selections": [{"include-controls": [{"control-id": r.control.id}
                                                                          for r in assessed]
                                                      or [{"control-id": "none"}]}]},
        "props": [{"name": "verdict", "value": summary.verdict}, {"name": "target", "value": meta.target}],
    }
    if observations:
        result["observations"] = observations
    if findings:
        result["findings"] = findings
    return {"assessment-results": {
        "uuid": _id(),
        "metadata": {"title": "Credential rotation evidence", "last-modified": iso(finished),
                     "version": meta.suite_version, "oscal-version": OSCAL_VERSION},
        "import-ap": {"href": "#runbook-credential-rotation-guide",
                      "remarks": "The assessment plan is the Gherkin features of rotation-runbook at the commit "
                                 "named."},
        "results": [result],
    }}
