"""An OSCAL assessment-results document (the version in OSCAL_VERSION): one observation per evidence item and per
scenario outcome, one finding per assessed control. Built as plain JSON so the runtime needs no OSCAL library; the
project's tests validate it against NIST's published JSON schema for that version and with compliance-trestle.

Every finding's target carries the `status` the schema requires: satisfied / not-satisfied (reason pass, fail or
other). A control that does not apply is `satisfied` with reason `other` and implementation-status `not-applicable`
(the justification in its remarks); a control a staging run only rehearsed is `not-satisfied` with reason `other`,
never satisfied: a rehearsal does not show the production control operating. The result's props carry the verdict and
name every scenario that did not run (INCOMPLETE)."""

from __future__ import annotations

import uuid
from datetime import datetime

from rotation.evidence.metadata import RunMetadata
from rotation.evidence.recorder import ScenarioRecord, iso
from rotation.evidence.summary import FAILING, ControlResult, Summary

OSCAL_VERSION = "1.2.1"
NS = "urn:rotation-runbook:oscal"  # the namespace of our own props


def _id() -> str:
    return str(uuid.uuid4())


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": _one_line(value, 1000) or "-"}


def _scenario_observation(s: ScenarioRecord, fallback: datetime) -> dict[str, object]:
    reason = f" Reason: {s.reason}" if s.reason else ""
    return {"uuid": _id(), "title": _one_line(f"Scenario {s.status}: {s.name}"),
            "description": f"Scenario '{s.name}' ({s.feature_file}:{s.line}) {s.status}.{reason}",
            "props": [_prop("scenario-status", s.status)],
            "methods": ["TEST"], "types": ["control-objective"], "collected": iso(s.end or s.start or fallback),
            "relevant-evidence": [{"href": "index.html", "description": f"scenario {s.nodeid}"}]}


def _item_observations(s: ScenarioRecord, seq_of: dict[int, int], fallback: datetime) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for step_text, items in [(None, s.items), *((f"{st.keyword} {st.text}", st.items) for st in s.steps)]:
        for item in items:
            where = f" in step '{step_text}'" if step_text else ""
            source = f" Source: {item.source}" if item.source else ""
            line = seq_of.get(id(item), 0)
            out.append({"uuid": _id(), "title": _one_line(item.name),
                        "description": f"Evidence '{item.name}' recorded{where} of scenario '{s.name}'.{source}",
                        "methods": ["TEST"], "collected": iso(item.collected) or iso(fallback),
                        "relevant-evidence": [{"href": f"evidence.jsonl#{line}",
                                               "description": _one_line(f"{item.name}: line {line} of "
                                                                        "evidence.jsonl")}]})
    return out


def _status(result: ControlResult) -> dict[str, str]:
    c = result.control
    if result.status == "not applicable":
        return {"state": "satisfied", "reason": "other", "remarks": f"Not applicable. {c.applicability}"}
    if result.status == "satisfied":
        return {"state": "satisfied", "reason": "pass"}
    if result.status == "not satisfied":
        return {"state": "not-satisfied", "reason": "fail"}
    return {"state": "not-satisfied", "reason": "other", "remarks": f"{result.status}: {result.why}"}


def _finding(result: ControlResult, related: list[str]) -> dict[str, object]:
    c = result.control
    failed = [s for s in result.scenarios if s.status in FAILING]
    target: dict[str, object] = {"type": "objective-id", "target-id": c.id, "title": _one_line(f"{c.label} {c.title}"),
                                 "status": _status(result)}
    if result.status == "not applicable":
        target["implementation-status"] = {"state": "not-applicable", "remarks": c.applicability}
        description = c.applicability
    else:
        description = (f"{result.passed} of {len(result.scenarios)} scenarios evidencing {c.label} passed."
                       + (f" {result.why[0].upper()}{result.why[1:]}." if result.why else "")
                       + "".join(f" Failed: '{s.name}': {s.reason or 'no reason recorded'}." for s in failed))
    finding: dict[str, object] = {"uuid": _id(), "title": _one_line(f"{c.label}: {result.status}"),
                                  "description": description, "props": [_prop("control-status", result.status)],
                                  "target": target}
    if related:
        finding["related-observations"] = [{"observation-uuid": u} for u in related]
    return finding


def _result_props(meta: RunMetadata, summary: Summary) -> list[dict[str, str]]:
    props = [_prop("verdict", summary.verdict), _prop("target", meta.target),
             _prop("signing-key", meta.signing_key or "unknown"),
             _prop("signing-key-fingerprint", meta.public_key_fingerprint or "unknown")]
    props += [_prop("verdict-reason", reason) for reason in summary.verdict_reasons()]
    props += [_prop(f"scenario-{s.status.replace(' ', '-')}", f"{s.name}: {s.reason or 'no reason recorded'}")
              for s in summary.incomplete]
    return props


def assessment_results(meta: RunMetadata, summary: Summary, seq_of: dict[int, int]) -> dict[str, object]:
    finished = meta.finished or meta.started
    observations: list[dict[str, object]] = []
    per_scenario: dict[str, list[str]] = {}
    for s in summary.scenarios:
        obs = [_scenario_observation(s, finished), *_item_observations(s, seq_of, finished)]
        observations += obs
        per_scenario[s.nodeid] = [str(o["uuid"]) for o in obs]
    assessed = [r for r in summary.controls() if r.status != "not assessed" or r.scenarios]
    findings = [_finding(r, [u for s in r.scenarios for u in per_scenario.get(s.nodeid, [])]) for r in assessed]
    result: dict[str, object] = {
        "uuid": _id(), "title": f"Credential rotation runbook, {meta.target} run {iso(meta.started)}",
        "description": f"Verdict {summary.verdict}. Operator {meta.operator}; approver {meta.approver or 'n/a'}; "
                       f"change {meta.change_id or 'n/a'}; suite {meta.suite_version}"
                       + (f" at commit {meta.git_commit}." if meta.git_commit else " (not run from a git checkout).")
                       + (" A staging rehearsal: no control is claimed satisfied." if meta.target != "live" else ""),
        "start": iso(meta.started), "end": iso(finished), "props": _result_props(meta, summary),
        "reviewed-controls": {"control-selections": [{"include-controls": [{"control-id": r.control.id}
                                                                          for r in assessed]
                                                      or [{"control-id": "none"}]}]},
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
