"""What the run showed, computed once and used by the HTML, the OSCAL document, the JUnit properties and the hash
chain alike, so they can never disagree about a verdict.

The verdict is honest about what did not run: FAILED when anything failed (a scenario, a population, the leak scan);
INCOMPLETE when any selected scenario was skipped, left out or not run, or a procedure recorded an exception it went on
with (values left as they were: rotation.core.proof.record_exception), each named with its reason; PASSED only when
every selected scenario passed with no exception. A control passes as "satisfied" only on a live run (and change
management only when that run names its approver and change id); a staging run "rehearsed" it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rotation.core.proof import EXCEPTION_PREFIX
from rotation.evidence.controls import Catalog, Control
from rotation.evidence.leaks import Leak
from rotation.evidence.recorder import EvidenceItem, Population, Recorder, ScenarioRecord

FAILING = frozenset({"failed", "error"})
INCOMPLETE = frozenset({"skipped", "not run"})


@dataclass(frozen=True)
class RunContext:
    """What a run can claim: a live run with an approver and a change id can satisfy controls; staging rehearses."""

    target: str = "staging"
    approver: str | None = None
    change_id: str | None = None

    @property
    def live(self) -> bool:
        return self.target == "live"

    @property
    def approved_change(self) -> bool:
        return self.live and bool(self.approver) and bool(self.change_id)


def _not_covered(value: object) -> list[object]:
    found = value.get("not covered") if isinstance(value, dict) else None
    return list(found) if isinstance(found, list) else [value]


@dataclass(frozen=True)
class ControlResult:
    control: Control
    scenarios: list[ScenarioRecord]
    context: RunContext = RunContext()

    @property
    def status(self) -> str:
        if not self.control.applicable:
            return "not applicable"
        statuses = {s.status for s in self.scenarios}
        if statuses & FAILING:
            return "not satisfied"
        if "passed" not in statuses:
            return "not assessed"
        if not self.context.live:
            return "rehearsed"
        if self.control.approved_change and not self.context.approved_change:
            return "not assessed"
        return "satisfied"

    @property
    def why(self) -> str:
        """One sentence on how the status was reached."""
        if self.status == "rehearsed":
            return ("rehearsed against staging stand-ins: the procedure works, but a rehearsal does not show the "
                    "production control operating")
        if self.status == "not assessed" and "passed" in {s.status for s in self.scenarios}:
            return "a change is satisfied only by a live run that names its approver and change id"
        return ""

    @property
    def passed(self) -> int:
        return sum(s.status == "passed" for s in self.scenarios)


@dataclass(frozen=True)
class ProcedureCount:
    tag: str
    title: str
    scenarios: list[ScenarioRecord]

    @property
    def counts(self) -> Counter[str]:
        return Counter(s.status for s in self.scenarios)


@dataclass
class Summary:
    catalog: Catalog
    scenarios: list[ScenarioRecord]
    populations: list[Population]
    context: RunContext = field(default_factory=RunContext)
    leaks: list[Leak] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # report-level failures other than leaks

    @classmethod
    def of(cls, recorder: Recorder, catalog: Catalog, context: RunContext | None = None) -> Summary:
        return cls(catalog=catalog, scenarios=list(recorder.scenarios), populations=list(recorder.populations),
                   context=context or RunContext())

    @property
    def counts(self) -> Counter[str]:
        return Counter(s.status for s in self.scenarios)

    @property
    def incomplete(self) -> list[ScenarioRecord]:
        """Selected scenarios that did not run to the end: skipped, left out or not run."""
        return [s for s in self.scenarios if s.status in INCOMPLETE]

    @property
    def exceptions(self) -> list[EvidenceItem]:
        """Exceptions a procedure recorded and went on with (rotation.core.proof.record_exception)."""
        return [i for s in self.scenarios for i in [*s.items, *(x for step in s.steps for x in step.items)]
                if i.name.startswith(EXCEPTION_PREFIX)]

    @property
    def verdict(self) -> str:
        if self.leaks or self.problems:
            return "FAILED"
        if any(s.status in FAILING for s in self.scenarios):
            return "FAILED"
        if any(not p.complete or not p.reconciles for p in self.populations):
            return "FAILED"
        if self.incomplete or self.exceptions:
            return "INCOMPLETE"
        if not any(s.status == "passed" for s in self.scenarios):
            return "NOT ASSESSED"
        return "PASSED"

    def verdict_reasons(self) -> list[str]:
        reasons = [leak.message() for leak in self.leaks] + list(self.problems)
        failed = [s for s in self.scenarios if s.status in FAILING]
        if failed:
            reasons.append(f"{len(failed)} of {len(self.scenarios)} scenarios failed: "
                           + "; ".join(s.name for s in failed))
        reasons += [f"incomplete population: {p.sentence()}" for p in self.populations if not p.complete]
        reasons += [f"population does not reconcile: {p.label}: {p.reconciliation()}" for p in self.populations
                    if not p.reconciles]
        reasons += [f"{s.status}: {s.name}: {s.reason or 'no reason recorded'}" for s in self.incomplete]
        reasons += [f"{i.name}: " + "; ".join(str(x) for x in _not_covered(i.value)) for i in self.exceptions]
        return reasons

    def controls(self) -> list[ControlResult]:
        return [ControlResult(c, [s for s in self.scenarios if cid in s.tags], self.context)
                for cid, c in self.catalog.controls.items()]

    def procedures(self) -> list[ProcedureCount]:
        groups: dict[str, list[ScenarioRecord]] = {}
        for scenario in self.scenarios:
            groups.setdefault(self.catalog.procedure_of(scenario.tags), []).append(scenario)
        order = [*self.catalog.procedures, "other"]
        return [ProcedureCount(tag, self.catalog.procedures.get(tag, "Other scenarios"), groups[tag])
                for tag in order if tag in groups]
