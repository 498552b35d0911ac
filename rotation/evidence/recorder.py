"""The evidence system of record: scenarios, steps, their UTC times and status, and the items steps record.

A Recorder is plain data plus the list of secrets to scan for. It never writes anything itself; the plugin feeds it
from pytest-bdd's hooks and the report module turns it into artifacts."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rotation.core.clock import utc_now
from rotation.core.database import mask_dsn_passwords
from rotation.core.proof import PopulationQuery
from rotation.core.secret import Secret, fingerprint, reveal

# The run folder's own files: an attachment may not replace one of them.
RESERVED_NAMES = frozenset({"index.html", "evidence.jsonl", "junit.xml", "cucumber.json",
                            "oscal-assessment-results.json", "manifest.json", "manifest.sig", "signing-key.pub.pem"})


CLOSING_PREFIX = "printed at the end: "


def strip_url_passwords(text: str) -> str:
    """A database password in any DSN form (URL userinfo, key=value, PGPASSWORD=) shown as ***: evidence shows the
    user, never the password, even when nobody registered it as a secret."""
    return mask_dsn_passwords(text)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class EvidenceItem:
    name: str
    value: object
    source: str | None
    collected: datetime
    step: str | None = None  # the step text it was recorded in, None for scenario setup/teardown
    redacted: bool = False  # a registered secret was replaced by its fingerprint before storing


@dataclass
class Population:
    label: str
    verified: int
    total: int
    source: str | None
    collected: datetime
    scenario: str | None = None
    query: PopulationQuery | None = None

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.verified == self.total

    @property
    def reperformable(self) -> bool:
        """An auditor can count it again: a query came with it. A figure without one is never shown as complete."""
        return self.query is not None

    def sentence(self) -> str:
        return f"{self.verified:,} of {self.total:,} {self.label}"

    def reads(self) -> str:
        """The figure as the summary phrases it ("opens with the old key: 0")."""
        phrase = self.query.reads if self.query else "{verified:,} of {total:,}"
        return phrase.format(verified=self.verified, total=self.total, missing=self.total - self.verified)

    def reconciliation(self) -> str | None:
        """rows x columns = cells = non-NULL + NULL, and whether the non-NULL count is the figure's total; None when
        the query took no census. The sentence says where it does not add up."""
        census = self.query.census if self.query else {}
        if not {"rows", "columns", "non_null", "nulls"} <= set(census):
            return None
        rows, columns, non_null, nulls = (census[k] for k in ("rows", "columns", "non_null", "nulls"))
        cells = rows * columns
        text = f"{rows:,} rows × {columns} columns = {cells:,} = {non_null:,} non-NULL + {nulls:,} NULL"
        if cells != non_null + nulls:
            text += f" (DOES NOT ADD UP: {non_null + nulls:,})"
        left = census.get("left", 0)  # values no key opens, left as found: named as an exception, never counted
        if left:
            text += f"; {left:,} of them left as found: no key opens them, not in the figure"
        if non_null - left != self.total:
            text += f" (the figure counts {self.total:,} values, not {non_null - left:,})"
        return text

    @property
    def reconciles(self) -> bool:
        text = self.reconciliation()
        return text is None or "(" not in text


@dataclass
class StepRecord:
    keyword: str
    text: str
    line: int
    background: bool = False
    argument: str | None = None  # data table or doc string, as Gherkin text
    start: datetime | None = None
    end: datetime | None = None
    status: str = "not run"  # passed / failed / undefined / not run
    error: str | None = None
    items: list[EvidenceItem] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        return None if self.start is None or self.end is None else (self.end - self.start).total_seconds()


@dataclass
class ScenarioRecord:
    nodeid: str
    name: str
    feature: str
    feature_file: str
    line: int
    tags: list[str]
    description: str = ""
    feature_description: str = ""
    keyword: str = "Scenario"
    example: dict[str, str] = field(default_factory=dict)  # the Examples row of an outline
    start: datetime | None = None
    end: datetime | None = None
    status: str = "not run"  # passed / failed / skipped / error / not run
    reason: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    items: list[EvidenceItem] = field(default_factory=list)  # recorded outside any step (fixtures)
    populations: list[Population] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        return None if self.start is None or self.end is None else (self.end - self.start).total_seconds()

    def step_at(self, line: int, text: str) -> StepRecord | None:
        return next((s for s in self.steps if s.line == line and s.text == text), None)


def query_dict(query: PopulationQuery | None) -> dict[str, object] | None:
    """A population's query as JSON (evidence.jsonl, the journal, the xdist workers' records)."""
    if query is None:
        return None
    return {"subject": query.subject, "sql": query.sql, "variables": dict(query.variables),
            "census": dict(query.census), "reads": query.reads, "note": query.note, "returns": dict(query.returns),
            "setup": query.setup, "key_files": dict(query.key_files)}


def query_of(data: object) -> PopulationQuery | None:
    if not isinstance(data, dict):
        return None
    return PopulationQuery(subject=str(data["subject"]), sql=str(data["sql"]), variables=dict(data["variables"]),
                           census={str(k): int(v) for k, v in dict(data["census"]).items()},
                           reads=str(data["reads"]), note=data.get("note"),
                           returns={str(k): str(v) for k, v in dict(data.get("returns") or PopulationQuery(
                               "", "").returns).items()},
                           setup=str(data.get("setup") or ""),
                           key_files={str(k): str(v) for k, v in dict(data.get("key_files") or {}).items()})


def to_jsonable(value: object) -> object:
    """Evidence values must survive JSON; anything else is stored as its repr so nothing is silently dropped."""
    try:
        return json.loads(json.dumps(value, default=_fallback))
    except (TypeError, ValueError):
        return repr(value)


def _fallback(value: object) -> object:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


class Recorder:
    """Holds one run's evidence. `record`, `population` and `register_secret` are the API steps call."""

    def __init__(self) -> None:
        self.scenarios: list[ScenarioRecord] = []
        self.run_items: list[EvidenceItem] = []  # recorded outside any scenario
        self.populations: list[Population] = []
        self._secrets: list[str] = []  # in memory only: never serialised, never logged
        self.artifacts: list[Path] = []  # other files the run wrote, scanned for secrets at the end
        self.attachments: dict[str, str] = {}  # file name in the run folder -> text (e.g. the incident report)
        self._scenario: ScenarioRecord | None = None
        self._step: StepRecord | None = None

    # --- the API steps use -------------------------------------------------------------------------------------
    def record(self, name: str, value: object, *, source: str | None = None) -> None:
        """Attach an item to the running step (or scenario, or run). Registered secrets in the value or source are
        replaced by their fingerprint first: the evidence must never hold a secret, even when a step slips."""
        value_json, value_redacted = self._redact(to_jsonable(value))
        source_text = self.redact_text(source) if source is not None else None
        source_redacted = source_text != source
        item = EvidenceItem(name=name, value=value_json, source=source_text, collected=utc_now(),
                            step=self._step.text if self._step else None,
                            redacted=value_redacted or source_redacted)
        self._bucket().append(item)

    def register_secret(self, secret: Secret | str) -> None:
        """Remember a secret for redaction and the end-of-run leak scan. Kept in memory only."""
        value = reveal(secret)
        if value and value not in self._secrets:
            self._secrets.append(value)

    def register_artifact(self, path: Path | str) -> None:
        """A file the run wrote outside the report (a state file, a log) that must not hold a secret either.
        Do not register files meant to hold secrets (.env and its backups)."""
        if Path(path) not in self.artifacts:
            self.artifacts.append(Path(path))

    def population(self, label: str, verified: int, total: int, *, source: str | None = None,
                   query: PopulationQuery | None = None) -> None:
        """A completeness figure, e.g. 20,000 of 20,000 values verified under the new key, with the read-only SQL an
        auditor re-runs in psql to get it again (`query`)."""
        if source is None and self._step is not None and self._step.items:
            # The count usually comes from the item the step just recorded: name it rather than show no source.
            last = self._step.items[-1]
            source = f"as for '{last.name}': {last.source}" if last.source else None
        source_text = self.redact_text(source) if source is not None else None
        pop = Population(label=label, verified=int(verified), total=int(total), source=source_text,
                         collected=utc_now(), scenario=self._scenario.nodeid if self._scenario else None,
                         query=self._redacted_query(query))
        self.populations.append(pop)
        if self._scenario is not None:
            self._scenario.populations.append(pop)
        self.record(f"population: {label}", {"verified": pop.verified, "total": pop.total}, source=source)

    def closing(self, title: str, lines: list[str], *, source: str) -> None:
        """What the run prints at its end (time to revoke and restore, notification results, review findings): kept
        as a run item, so the signed evidence and the report hold exactly what the terminal shows."""
        item = EvidenceItem(name=f"{CLOSING_PREFIX}{title}", value=self._redact(list(lines))[0], source=source,
                            collected=utc_now())
        self.run_items.append(item)

    def closing_items(self) -> list[EvidenceItem]:
        return [i for i in self.run_items if i.name.startswith(CLOSING_PREFIX)]

    def _redacted_query(self, query: PopulationQuery | None) -> PopulationQuery | None:
        if query is None:
            return None
        return PopulationQuery(subject=query.subject, sql=self.redact_text(query.sql),
                               variables={k: self.redact_text(v) for k, v in query.variables.items()},
                               census=dict(query.census), reads=query.reads,
                               note=self.redact_text(query.note) if query.note else None, returns=query.returns,
                               setup=self.redact_text(query.setup),
                               key_files={k: self.redact_text(v) for k, v in query.key_files.items()})

    def attach(self, name: str, text: str) -> None:
        """A document the run produced (e.g. incident-report.md), written into the run folder under `name` so the
        manifest, its signature and the leak scan cover it. Registered secrets are replaced by fingerprints first."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"attachment name {name!r} must be a plain file name")
        if name in RESERVED_NAMES:
            raise ValueError(f"attachment name {name!r} is one of the run folder's own files")
        self.attachments[name] = str(self._redact(text)[0])

    # --- the lifecycle the plugin drives -------------------------------------------------------------------------
    def begin_scenario(self, scenario: ScenarioRecord) -> None:
        self.scenarios.append(scenario)
        self._scenario, self._step = scenario, None
        scenario.start = utc_now()

    def end_scenario(self) -> None:
        if self._scenario is not None:
            self._scenario.end = utc_now()
        self._scenario, self._step = None, None

    @property
    def current_scenario(self) -> ScenarioRecord | None:
        return self._scenario

    @property
    def current_step(self) -> StepRecord | None:
        return self._step

    def begin_step(self, keyword: str, text: str, line: int, *, background: bool = False) -> StepRecord:
        step = StepRecord(keyword=keyword, text=text, line=line, background=background)
        if self._scenario is not None:
            existing = self._scenario.step_at(line, text)
            if existing is not None:
                step = existing
            else:
                self._scenario.steps.append(step)
        step.start, step.status = utc_now(), "running"
        self._step = step
        return step

    def end_step(self, status: str, error: str | None = None) -> None:
        if self._step is None:
            return
        self._step.end = utc_now()
        self._step.status = status
        self._step.error = self.redact_text(error) if error is not None else None
        self._step = None

    # --- secrets -------------------------------------------------------------------------------------------------
    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(self._secrets)

    def redact_text(self, text: str) -> str:
        return self._redact(text)[0]  # type: ignore[return-value]

    def _redact(self, value: object) -> tuple[object, bool]:
        if isinstance(value, str):
            out = value
            for secret in self._secrets:
                out = out.replace(secret, f"[secret {fingerprint(secret)}]")
            out = strip_url_passwords(out)
            return out, out != value
        if isinstance(value, list):
            pairs = [self._redact(v) for v in value]
            return [p[0] for p in pairs], any(p[1] for p in pairs)
        if isinstance(value, dict):
            pairs_d = {self._redact(k)[0]: self._redact(v) for k, v in value.items()}
            return {k: p[0] for k, p in pairs_d.items()}, any(p[1] for p in pairs_d.values())
        return value, False

    def rewrite_text(self, fn: Callable[[str], str]) -> None:
        """Apply `fn` to every string the run holds (values, sources, errors, reasons). The leak scan uses it to
        take an encoded secret out of the model before the artifacts are written again."""
        def walk(value: object) -> object:
            if isinstance(value, str):
                return fn(value)
            if isinstance(value, list):
                return [walk(v) for v in value]
            if isinstance(value, dict):
                return {walk(k): walk(v) for k, v in value.items()}
            return value

        def items(bucket: list[EvidenceItem]) -> None:
            for item in bucket:
                item.value = walk(item.value)
                item.source = fn(item.source) if item.source is not None else None

        items(self.run_items)
        for scenario in self.scenarios:
            items(scenario.items)
            scenario.reason = walk(scenario.reason)  # type: ignore[assignment]
            for step in scenario.steps:
                items(step.items)
                step.error = walk(step.error)  # type: ignore[assignment]
        for pop in self.populations:
            pop.source = walk(pop.source)  # type: ignore[assignment]

    def _bucket(self) -> list[EvidenceItem]:
        if self._step is not None:
            return self._step.items
        if self._scenario is not None:
            return self._scenario.items
        return self.run_items
