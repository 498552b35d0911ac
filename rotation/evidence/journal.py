"""Evidence that survives a kill -9: every event is journaled as it happens, and the next session seals the journal of
a dead one into a normal signed run folder.

While a session runs, its recorder (`JournalingRecorder`) appends one JSON line per event (a scenario or step begins
or ends, an item or population is recorded, a document attached) to `<reports>/.journals/<run id>.jsonl`, mode 0600,
fsync per line, and holds an exclusive lock on the file. The values are those the recorder stores, so registered
secrets are already replaced by their fingerprints. A session that ends normally writes its run folder and removes
its journal. When a session starts, `seal_dead_journals` takes every journal whose lock it can get (the kernel drops a
lock with its process, so its writer is gone), replays it into a Recorder, marks the scenario it cut short as an
error naming the step it died in or after, and writes the run folder with the usual writer (report.write_run).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rotation.core.clock import utc_now
from rotation.core.proof import PopulationQuery
from rotation.evidence.controls import Catalog
from rotation.evidence.metadata import RunMetadata
from rotation.evidence.recorder import (
    EvidenceItem,
    Population,
    Recorder,
    ScenarioRecord,
    StepRecord,
    iso,
    query_dict,
    query_of,
    to_jsonable,
)
from rotation.evidence.report import RunOutput, write_run

JOURNALS = ".journals"


def journal_path(reports_dir: Path, run_id: str) -> Path:
    return reports_dir / JOURNALS / f"{run_id}.jsonl"


class Journal:
    """An append-only, locked, fsynced file of events. Opened at the first event, so a session that records nothing
    leaves nothing behind."""

    def __init__(self, path: Path, meta: RunMetadata) -> None:
        self.path, self.meta = path, meta
        self._fd: int | None = None
        self.events: list[dict[str, object]] = []  # kept in memory too: an xdist worker ships them to the controller

    def write(self, event: dict[str, object]) -> None:
        if self._fd is None:
            self._open()
        self._append(event)
        self.events.append(cast(dict[str, object], to_jsonable(event)))

    def close(self, *, remove: bool) -> None:
        """End of session: remove the journal once its run folder is written (keep it otherwise, to be sealed)."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def _open(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held for the life of this process, released by its death
        self._fd = fd
        self._append({"e": "run", "pid": os.getpid(), "meta": self.meta.as_dict()})

    def _append(self, event: dict[str, object]) -> None:
        assert self._fd is not None
        os.write(self._fd, (json.dumps(to_jsonable(event), ensure_ascii=False) + "\n").encode())
        os.fsync(self._fd)


class JournalingRecorder(Recorder):
    """A Recorder that journals every event as it happens (see the module docstring)."""

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    def begin_scenario(self, scenario: ScenarioRecord) -> None:
        super().begin_scenario(scenario)
        self.journal.write(scenario_event(scenario))

    def end_scenario(self) -> None:
        scenario = self.current_scenario
        super().end_scenario()
        if scenario is not None:
            self.journal.write({"e": "scenario_end", "status": scenario.status, "reason": scenario.reason,
                                "end": iso(scenario.end), "steps": [_step_outcome(s) for s in scenario.steps]})

    def begin_step(self, keyword: str, text: str, line: int, *, background: bool = False) -> StepRecord:
        step = super().begin_step(keyword, text, line, background=background)
        self.journal.write({"e": "step", **_step_shape(step), "start": iso(step.start)})
        return step

    def end_step(self, status: str, error: str | None = None) -> None:
        step = self.current_step
        super().end_step(status, error)
        if step is not None:
            self.journal.write({"e": "step_end", **_step_outcome(step)})

    def record(self, name: str, value: object, *, source: str | None = None) -> None:
        super().record(name, value, source=source)
        item = self._bucket()[-1]
        self.journal.write({"e": "item", "name": item.name, "value": item.value, "source": item.source,
                            "collected": iso(item.collected), "step": item.step, "redacted": item.redacted})

    def population(self, label: str, verified: int, total: int, *, source: str | None = None,
                   query: PopulationQuery | None = None) -> None:
        super().population(label, verified, total, source=source, query=query)
        pop = self.populations[-1]
        self.journal.write({"e": "population", "label": pop.label, "verified": pop.verified, "total": pop.total,
                            "source": pop.source, "collected": iso(pop.collected), "scenario": pop.scenario,
                            "query": query_dict(pop.query)})

    def closing(self, title: str, lines: list[str], *, source: str) -> None:
        super().closing(title, lines, source=source)
        item = self.run_items[-1]
        self.journal.write({"e": "item", "name": item.name, "value": item.value, "source": item.source,
                            "collected": iso(item.collected), "step": None, "redacted": item.redacted})

    def attach(self, name: str, text: str) -> None:
        super().attach(name, text)
        self.journal.write({"e": "attach", "name": name, "text": self.attachments[name]})


def scenario_event(scenario: ScenarioRecord) -> dict[str, object]:
    """A scenario's shape (name, feature, tags, steps; no outcomes) as a journal event."""
    fields = {k: v for k, v in asdict(scenario).items() if k not in ("steps", "items", "populations")}
    return {"e": "scenario", **fields, "start": iso(scenario.start), "end": iso(scenario.end),
            "steps": [_step_shape(s) for s in scenario.steps]}


def scenario_from_event(e: dict[str, Any]) -> ScenarioRecord:
    steps = [StepRecord(s["keyword"], s["text"], s["line"], s["background"], s.get("argument")) for s in e["steps"]]
    known = {f.name for f in fields(ScenarioRecord)} - {"steps", "start", "end"}
    return ScenarioRecord(**{k: v for k, v in e.items() if k in known}, steps=steps, start=_time(e.get("start")),
                          end=_time(e.get("end")))


def _step_shape(step: StepRecord) -> dict[str, object]:
    return {"keyword": step.keyword, "text": step.text, "line": step.line, "background": step.background,
            "argument": step.argument}


def _step_outcome(step: StepRecord) -> dict[str, object]:
    return {"line": step.line, "text": step.text, "status": step.status, "error": step.error,
            "start": iso(step.start), "end": iso(step.end)}


# --- sealing the journal of a session that died --------------------------------------------------------------------

@dataclass
class Replayed:
    meta: RunMetadata
    recorder: Recorder
    pid: int
    last_event: datetime | None
    seal_failure: dict[str, Any] | None = None  # the session's own account of why it could not write its folder


SEAL_FAILED = "seal_failed"  # the session lived to the end but could not write its run folder


def record_seal_failure(journal: Journal, error: str) -> None:
    """The session could not write its run folder: say so in its journal, which it keeps for a later seal."""
    journal.write({"e": SEAL_FAILED, "error": error, "at": iso(utc_now())})


def seal_dead_journals(reports_dir: Path, catalog: Catalog, *, sealed_by: str,
                       signing_key: Ed25519PrivateKey | None = None,
                       sealer: dict[str, object] | None = None) -> list[RunOutput]:
    """Write a signed run folder for every journal under reports_dir whose session is gone, then remove it. Each such
    folder says it was sealed late: when, by which run or command (`sealed_by`), by whom (`sealer`), and why."""
    outputs = []
    for path in sorted((reports_dir / JOURNALS).glob("*.jsonl")):
        with _dead(path) as dead:
            if not dead:
                continue
            try:
                replayed = replay(path)
            except (ValueError, KeyError, TypeError):
                path.rename(path.with_suffix(".unreadable"))  # keep it for a human; never retry it forever
                continue
            if replayed.recorder.scenarios:
                _close_cut_short(replayed)
                failure = replayed.seal_failure
                why = (f"the session that wrote this journal could not write its run folder at {failure['at']}: "
                       f"{failure['error']}" if failure else
                       "the session that wrote this journal ended without writing its run folder (killed or crashed)")
                late = {"sealed at": iso(utc_now()), "sealed by": sealed_by, **(sealer or {}), "why": why}
                replayed.meta.sealed_late = late
                replayed.recorder.run_items.append(EvidenceItem(
                    "journal sealed", {"journal": path.name, "writer pid": replayed.pid, **late},
                    source=f"{JOURNALS}/{path.name}, replayed event by event", collected=utc_now()))
                outputs.append(write_run(reports_dir, replayed.meta, replayed.recorder, catalog,
                                         signing_key=signing_key, copies={}))
            path.unlink()
    return outputs


@contextlib.contextmanager
def _dead(path: Path) -> Iterator[bool]:
    """True while we hold the lock of a journal whose writer is gone (and which no other session sealed meanwhile)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False  # its session is alive
            return
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False  # another session sealed and removed it while we waited
        yield same
    finally:
        os.close(fd)


def replay_events(events: list[dict[str, Any]], recorder: Recorder | None = None) -> Recorder:
    """A recorder rebuilt from journal events (an xdist worker's, shipped to the controller)."""
    replayer = _Replayer(recorder)
    for event in events:
        replayer.apply(event)
    return replayer.recorder


def replay(path: Path) -> Replayed:
    """Rebuild the run's metadata and recorder from its journal. A torn last line (a kill mid-write) is dropped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    events: list[dict[str, Any]] = []
    for n, line in enumerate(lines):
        try:
            events.append(json.loads(line))
        except ValueError:
            if n != len(lines) - 1:
                raise
    head = events[0]
    if head.get("e") != "run":
        raise ValueError(f"{path.name} does not start with the run's metadata")
    meta = _meta(head["meta"])
    replayer = _Replayer()
    for event in events[1:]:
        replayer.apply(event)
    stamps = [_time(e.get(k)) for e in events for k in ("start", "end", "collected")]
    last = max((s for s in stamps if s is not None), default=None)
    return Replayed(meta, replayer.recorder, int(head.get("pid", 0)), last, replayer.seal_failure)


def _meta(data: dict[str, Any]) -> RunMetadata:
    fields = dict(data)
    fields["started"] = _time(fields["started"])
    fields["finished"] = _time(fields.get("finished"))
    fields["signing_key"] = ""  # the sealing session signs; write_run says with which key
    known = set(RunMetadata.__dataclass_fields__)
    return RunMetadata(**{k: v for k, v in fields.items() if k in known})


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


class _Replayer:
    def __init__(self, recorder: Recorder | None = None) -> None:
        self.recorder = recorder or Recorder()
        self.scenario: ScenarioRecord | None = None
        self.step: StepRecord | None = None
        self.seal_failure: dict[str, Any] | None = None

    def apply(self, e: dict[str, Any]) -> None:
        getattr(self, f"_{e['e']}")(e)

    def _scenario(self, e: dict[str, Any]) -> None:
        self.scenario = scenario_from_event(e)
        self.recorder.scenarios.append(self.scenario)
        self.step = None

    def _scenario_end(self, e: dict[str, Any]) -> None:
        if self.scenario is None:
            return
        self.scenario.status, self.scenario.reason, self.scenario.end = e["status"], e["reason"], _time(e["end"])
        for outcome in e["steps"]:
            step = self.scenario.step_at(outcome["line"], outcome["text"])
            if step is not None:
                _apply_outcome(step, outcome)
        self.scenario, self.step = None, None

    def _step(self, e: dict[str, Any]) -> None:
        step = self.scenario.step_at(e["line"], e["text"]) if self.scenario else None
        if step is None:
            step = StepRecord(e["keyword"], e["text"], e["line"], e["background"], e.get("argument"))
            if self.scenario is not None:
                self.scenario.steps.append(step)
        step.start, step.status = _time(e["start"]), "running"
        self.step = step

    def _step_end(self, e: dict[str, Any]) -> None:
        if self.step is not None:
            _apply_outcome(self.step, e)
        self.step = None

    def _item(self, e: dict[str, Any]) -> None:
        item = EvidenceItem(e["name"], e["value"], e["source"], _time(e["collected"]) or utc_now(), e["step"],
                            e["redacted"])
        bucket = (self.step.items if self.step else self.scenario.items if self.scenario
                  else self.recorder.run_items)
        bucket.append(item)

    def _population(self, e: dict[str, Any]) -> None:
        pop = Population(e["label"], e["verified"], e["total"], e["source"], _time(e["collected"]) or utc_now(),
                         e["scenario"], query_of(e.get("query")))
        self.recorder.populations.append(pop)
        if self.scenario is not None:
            self.scenario.populations.append(pop)

    def _seal_failed(self, e: dict[str, Any]) -> None:
        self.seal_failure = {"error": e.get("error"), "at": e.get("at")}

    def _attach(self, e: dict[str, Any]) -> None:
        self.recorder.attachments[e["name"]] = e["text"]


def _apply_outcome(step: StepRecord, outcome: dict[str, Any]) -> None:
    step.status, step.error = outcome["status"], outcome["error"]
    step.start, step.end = _time(outcome["start"]) or step.start, _time(outcome["end"])


def _close_cut_short(replayed: Replayed) -> None:
    """The scenario the session died in: an error naming the step it died in or after."""
    recorder = replayed.recorder
    open_scenarios = [s for s in recorder.scenarios if s.end is None]
    for scenario in open_scenarios:
        running = next((s for s in scenario.steps if s.status == "running"), None)
        done = [s for s in scenario.steps if s.status not in ("not run", "running")]
        if running is not None:
            running.status, running.end = "interrupted", replayed.last_event
            where = f"during step '{running.keyword} {running.text}'"
        elif done:
            where = f"after step '{done[-1].keyword} {done[-1].text}'"
        else:
            where = "before its first step"
        scenario.status, scenario.end = "error", replayed.last_event
        scenario.reason = f"the session (pid {replayed.pid}) died {where}; its journal was sealed by the next session"
    replayed.meta.finished = replayed.last_event
