"""The auditor's summary: what an auditor samples from a run, taken from the evidence and printed whole on the first
pages of the report (never cut, never a developer's term).

For each rotation the run carried out (a scenario that logged a row in the rotation log): the credential, when, who,
the downtime window from the stop (or restart) command to the app healthy on the new credential, the proof that the
app runs on it (method and result), what became of the old credential, and what the test message proves. The facts
are read from evidence items by name; `evidence.jsonl` keeps every item whole and the summary cites its line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rotation.evidence.recorder import EvidenceItem, ScenarioRecord, StepRecord

LOGGED = "rotation logged"
DOWNTIME = "downtime window"
STOPS = ("application stopped", "application reloaded", "application restarted")  # what opens the window
DB_PROOF = "key loaded by the app"
PROVIDER_PROOF = " loaded by the application"  # "<label> loaded by the application"
TEST_MESSAGE = "test message"
AFTER_RETIREMENT = " after retirement"  # "old <label> after retirement"
REVOKED = "time to revoke and restore"
OLD_KEY_SWEEP = "values the old key opens, anywhere in the app's schemas"


def stamp(moment: datetime | str | None) -> str:
    """The one time format of the print: 2026-12-06 00:50:35.123Z (UTC, to the millisecond)."""
    if moment is None:
        return "not recorded"
    if isinstance(moment, str):
        text = moment
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
        moment = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:23] + "Z"


@dataclass(frozen=True)
class Fact:
    """One decisive fact, whole, with the evidence.jsonl line that holds its item."""

    text: str
    line: int | None = None


@dataclass
class RotationFacts:
    scenario: ScenarioRecord
    credential: str
    logged: Fact
    window: Fact | None = None
    proofs: list[Fact] = field(default_factory=list)
    revocations: list[Fact] = field(default_factory=list)


def _items(scenario: ScenarioRecord) -> list[tuple[StepRecord | None, EvidenceItem]]:
    return [(None, i) for i in scenario.items] + [(st, i) for st in scenario.steps for i in st.items]


def _value(item: EvidenceItem) -> dict[str, object]:
    return item.value if isinstance(item.value, dict) else {}


def _seconds(start: datetime, end: datetime) -> str:
    return f"{(end - start).total_seconds():,.3f} s"


def _db_window(value: dict[str, object], stop_step: StepRecord | None) -> str | None:
    window = value.get(DOWNTIME)
    if not isinstance(window, dict):
        return None
    start = next((v for k, v in window.items() if str(k).startswith("from")), None)
    end = next((v for k, v in window.items() if str(k).startswith("to")), None)
    start_is = next((str(k)[6:-1] for k in window if str(k).startswith("from (")), "start")
    seconds = next((v for k, v in window.items() if str(k).startswith("seconds")), None)
    text = (f"{stamp(str(start))} ({start_is}) to {stamp(str(end))} (the app proven on the new key): "
            f"{seconds} s at most, {window.get('mode', '')}")
    if stop_step is not None and stop_step.start is not None and "stop" not in start_is:
        text += f"; the stop command began {stamp(stop_step.start)}"
    return text


def _restart_window(stop: StepRecord, healthy: EvidenceItem) -> str:
    assert stop.start is not None
    return (f"{stamp(stop.start)} (restart command) to {stamp(healthy.collected)} (healthy on the new credential): "
            f"{_seconds(stop.start, healthy.collected)}")


def _proof(item: EvidenceItem) -> str:
    v = _value(item)
    method = v.get("proof", "not recorded")
    if item.name == DB_PROOF:
        result = ("the value it read matches the value under the new key" if v.get("matches the value under the key")
                  else "the value it read does NOT match the value under the new key")
        return (f"{method}: the app was made to read {v.get('value read', '?')} of {v.get('client_id', '?')} "
                f"({v.get('answer', '')}); {result} {v.get('new key', '')}")
    check = v.get("app's own check")
    ok = check.get("ok") if isinstance(check, dict) else None
    return (f"{method}: the process started {stamp(str(v.get('process started')))}, after .env changed "
            f"{stamp(str(v.get('.env changed')))}; health {v.get('health')}; the app's own check of the provider: "
            + ("passes" if ok else "fails" if ok is False else "none"))


def _old_credential(item: EvidenceItem) -> str:
    v = _value(item)
    answer = "refused" if v.get("accepted") is False else "STILL ACCEPTED"
    return (f"{item.name}: {answer} by {v.get('provider', 'the provider')} ({v.get('status')}/{v.get('code')}: "
            f"{v.get('detail')})")


def _revoked(item: EvidenceItem) -> str:
    v = _value(item)
    return (f"old credential {v.get('old_credential')}: {v.get('old_credential_rejection')}; revoked "
            f"{stamp(str(v.get('revoked_at')))}, {v.get('time_to_revoke_s')} s after the start; service restored "
            f"{stamp(str(v.get('restored_at')))}")


def _sweep(item: EvidenceItem) -> str:
    v = _value(item)
    found = v.get("found")
    count = len(found) if isinstance(found, list) else "?"
    return (f"old key {v.get('old key')}: opens {count} of {v.get('encrypted-looking values')} encrypted-looking "
            f"values in {v.get('columns')} columns of the app's schemas")


def rotation_facts(scenario: ScenarioRecord, line_of: dict[int, int]) -> RotationFacts | None:
    """The facts of one scenario that logged a rotation; None when it logged none."""
    items = _items(scenario)
    logged = next((i for _, i in items if i.name == LOGGED), None)
    if logged is None:
        return None
    v = _value(logged)
    credential = str(v.get("credential_type", "?"))
    facts = RotationFacts(scenario, credential, Fact(
        f"row {v.get('rotation_id')} at {stamp(str(v.get('rotated_at')))} by {v.get('rotated_by')}, reason "
        f"“{v.get('rotation_reason')}”, next due {stamp(str(v.get('next_rotation_due')))}", line_of.get(id(logged))))
    stop: StepRecord | None = None
    for step, item in items:
        line = line_of.get(id(item))
        if item.name in STOPS and stop is None:  # the first: a later restart does not open the window
            stop = step
        elif DOWNTIME in _value(item) and facts.window is None:
            text = _db_window(_value(item), stop)
            facts.window = Fact(text, line) if text else None
        elif (item.name.startswith("health after") and _value(item).get("status") == 200 and facts.window is None
              and stop is not None and stop.start is not None and not any(i.name == DB_PROOF for _, i in items)):
            facts.window = Fact(_restart_window(stop, item), line)
        if item.name == DB_PROOF or item.name.endswith(PROVIDER_PROOF):
            facts.proofs.append(Fact(_proof(item), line))
        elif item.name == TEST_MESSAGE:
            facts.proofs.append(Fact(f"test message: {_value(item).get('verdict')}", line))
        elif item.name.startswith("old ") and item.name.endswith(AFTER_RETIREMENT):
            facts.revocations.append(Fact(_old_credential(item), line))
        elif item.name == REVOKED and isinstance(item.value, dict):
            facts.revocations.append(Fact(_revoked(item), line))
        elif item.name == OLD_KEY_SWEEP:
            facts.revocations.append(Fact(_sweep(item), line))
    if not facts.proofs:  # an emergency restart: the app's health on the new credential is what was shown
        healthy = next(((i, line_of.get(id(i))) for _, i in items if i.name.startswith("health after")
                        and _value(i).get("status") == 200), None)
        if healthy is not None:
            facts.proofs.append(Fact(_health(healthy[0]), healthy[1]))
    return facts


def _health(item: EvidenceItem) -> str:
    body = _value(item).get("body")
    checks = body.get("checks") if isinstance(body, dict) else None
    failing = sorted(k for k, c in (checks or {}).items() if isinstance(c, dict) and c.get("ok") is False)
    return (f"{item.name}: the app answers healthy (HTTP 200) after loading the new credential; its own checks "
            + (f"of {', '.join(sorted(checks or {}))} pass" if checks and not failing else
               f"FAIL for {', '.join(failing)}" if failing else "report nothing"))


def sampled_rotations(scenarios: list[ScenarioRecord], line_of: dict[int, int]) -> list[RotationFacts]:
    return [f for s in scenarios if (f := rotation_facts(s, line_of)) is not None]


DEVELOPER = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Failed|Applicable)): ")


def plain(text: str) -> str:
    """A reason as an auditor reads it: without the exception class a developer would see (`ReencryptionError: `)."""
    return DEVELOPER.sub("", text.strip())
