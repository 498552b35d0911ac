"""The controls catalog (controls.yaml) and the collection rule: every scenario names at least one known control."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

CATALOG_PATH = Path(__file__).with_name("controls.yaml")


@dataclass(frozen=True)
class Control:
    id: str
    framework: str
    ref: str
    title: str
    meaning: str
    evidenced_by: str
    applicable: bool
    applicability: str
    approved_change: bool = False  # satisfied only by a live run that names its approver and change id

    @property
    def label(self) -> str:
        return f"{self.framework} {self.ref}"


@dataclass(frozen=True)
class Catalog:
    controls: dict[str, Control]
    prefixes: tuple[str, ...]
    procedures: dict[str, str]
    changes: tuple[str, ...] = ()  # tags of scheduled production changes: each needs every change-management control

    @property
    def change_management(self) -> tuple[str, ...]:
        """The controls only an approved live change satisfies (SOC 2 CC8.1)."""
        return tuple(cid for cid, c in self.controls.items() if c.approved_change)

    def procedure_of(self, tags: Iterable[str]) -> str:
        tags = set(tags)
        return next((p for p in self.procedures if p in tags), "other")

    def looks_like_control(self, tag: str) -> bool:
        return tag in self.controls or tag.upper().startswith(self.prefixes)

    def problems(self, tags: Iterable[str]) -> list[str]:
        """Why a scenario's tags do not satisfy the rule, as sentences; empty when they do."""
        tags = set(tags)
        unknown = sorted(t for t in tags if self.looks_like_control(t) and t not in self.controls)
        known = sorted(t for t in tags if t in self.controls)
        out = [f"unknown control tag @{t}" for t in unknown]
        if not known and not unknown:
            out.append("no control tag")
        changes = sorted(tags & set(self.changes))
        missing = [c for c in self.change_management if c not in tags]
        if changes and missing:
            out.append(f"a @{changes[0]} procedure is a change to production: it needs "
                       + ", ".join(f"@{c}" for c in missing) + " (change management), like every other")
        return out


def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    controls = {}
    for cid, c in data["controls"].items():
        applicable = bool(c.get("applicable", True))
        controls[cid] = Control(id=cid, framework=c["framework"], ref=str(c["ref"]), title=c["title"],
                                meaning=" ".join(c["meaning"].split()), evidenced_by=c.get("evidenced_by", ""),
                                applicable=applicable,
                                applicability=" ".join(c.get("applicability", "Applicable.").split()),
                                approved_change=bool(c.get("satisfied_only_by_an_approved_live_change", False)))
    return Catalog(controls=controls, prefixes=tuple(p.upper() for p in data.get("framework_prefixes", [])),
                   procedures=dict(data.get("procedures", {})), changes=tuple(data.get("changes", ())))
