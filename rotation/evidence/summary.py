"""What the run showed, computed once and used by the HTML, the OSCAL document and the hash chain alike, so the
three can never disagree about a verdict."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rotation.evidence.controls import Catalog, Control
from rotation.evidence.leaks import Leak
from rotation.evidence.recorder import Population, Recorder, ScenarioRecord

FAILING = frozenset({"failed", "error"})


@dataclass(frozen=True)
class ControlResult:
    control: Control
    scenarios: list[ScenarioRecord]

    @property
    def status(self) -> str:
        if not self.control.applicable:
            return "not applicable"
        statuses = {s.status for s in self.scenarios}
        if statuses & FAILING:
            return "not satisfied"
        if "passed" in statuses:
            return "satisfied"
        return "not assessed"

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
    leaks: list[Leak] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # report-level failures other than leaks

    @classmethod
    def of(cls, recorder: Recorder, catalog: Catalog) -> Summary:
        return cls(catalog=catalog, scenarios=list(recorder.scenarios), populations=list(recorder.populations))

    @property
    def counts(self) -> Counter[str]:
        return Counter(s.status for s in self.scenarios)

    @property
    def verdict(self) -> str:
        if self.leaks or self.problems:
            return "FAILED"
        if any(s.status in FAILING for s in self.scenarios):
            return "FAILED"
        if any(not p.complete for p in self.populations):
            return "FAILED"
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
        return reasons

    def controls(self) -> list[ControlResult]:
        return [ControlResult(c, [s for s in self.scenarios if cid in s.tags])
                for cid, c in self.catalog.controls.items()]

    def procedures(self) -> list[ProcedureCount]:
        groups: dict[str, list[ScenarioRecord]] = {}
        for scenario in self.scenarios:
            groups.setdefault(self.catalog.procedure_of(scenario.tags), []).append(scenario)
        order = [*self.catalog.procedures, "other"]
        return [ProcedureCount(tag, self.catalog.procedures.get(tag, "Other scenarios"), groups[tag])
                for tag in order if tag in groups]
