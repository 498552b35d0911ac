"""Run the suite's scenarios the way an operator does (a real `pytest` subprocess) and read back what happened."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET  # noqa: S405  (our own pytest's JUnit file)
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def seeded_crm(admin_dsn: str, rows: int, *, runbook_schema: bool = True) -> Iterator[tuple[str, str]]:
    """A scratch CRM database with both schemas and `rows` seeded clients, reached as the app's role (owner, not a
    superuser): yields (dsn, the key they are under). Without `runbook_schema` it holds only the app's migrations, as
    a production database does on day one (the suite's schema is then the first run's to create)."""
    import psycopg

    from rotation.core.database import apply_runbook_schema
    from rotation.core.keys import generate_key
    from staging.crm import apply_crm_schema
    from staging.postgres import app_database
    from staging.seed import seed_clients

    with app_database(admin_dsn) as dsn:  # as the app's own non-superuser role, owner of its tables
        key = generate_key()
        with psycopg.connect(dsn) as conn:
            apply_crm_schema(conn)
            if runbook_schema:
                apply_runbook_schema(conn)
        seed_clients(dsn, key, rows)
        yield dsn, key


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # passed / failed / skipped / error
    message: str = ""


@dataclass(frozen=True)
class StepResult:
    """One step of one scenario, as the run's signed evidence (evidence.jsonl) records it."""

    scenario: str
    keyword: str
    text: str
    status: str  # passed / failed / undefined / not run / interrupted
    error: str | None

    @property
    def step(self) -> str:
        return f"{self.keyword} {self.text}"


def read_evidence(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "evidence.jsonl").read_text().splitlines() if line.strip()]


def step_results(folder: Path) -> list[StepResult]:
    entries = read_evidence(folder)
    names = {e["nodeid"]: str(e["name"]) for e in entries if e["type"] == "scenario"}
    return [StepResult(names.get(str(e["scenario"]), str(e["scenario"])), str(e["keyword"]), str(e["text"]),
                       str(e["status"]), e.get("error"))  # type: ignore[arg-type]
            for e in entries if e["type"] == "step"]


def newest_run_folder(reports: Path) -> Path | None:
    folders = sorted((p for p in reports.glob("*-*") if p.is_dir() and (p / "evidence.jsonl").exists()),
                     key=lambda p: p.stat().st_mtime_ns)
    return folders[-1] if folders else None


@dataclass(frozen=True)
class SuiteRun:
    returncode: int
    output: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    run_folder: Path | None = None

    def only(self) -> Outcome:
        assert len(self.outcomes) == 1, f"expected one scenario, ran {list(self.outcomes)}\n{self.output[-3000:]}"
        return next(iter(self.outcomes.values()))

    def steps(self) -> list[StepResult]:
        assert self.run_folder is not None, f"the run wrote no evidence:\n{self.output[-3000:]}"
        return step_results(self.run_folder)

    def failed_step(self) -> StepResult:
        """The one step the evidence records as failed (the negative controls assert which one, and why)."""
        failed = [s for s in self.steps() if s.status == "failed"]
        assert len(failed) == 1, f"expected exactly one failed step, the evidence has {failed}\n{self.output[-3000:]}"
        return failed[0]


@dataclass(frozen=True)
class SuiteRunner:
    admin_dsn: str
    workdir: Path

    def run(self, *args: str, sabotage: str | None = None, rows: int = 200, timeout_s: float = 300) -> SuiteRun:
        junit = self.workdir / f"junit-{len(list(self.workdir.glob('junit-*')))}.xml"
        env = {**os.environ, "PYTHONPATH": str(PROJECT)}
        if sabotage:
            env["ROTATION_SABOTAGE"] = sabotage
        if "--basetemp" in args:  # the test reads the worlds' .env files back afterwards (tests/leakcheck.py)
            env["ROTATION_KEEP_KEY_FILES"] = "1"
        command = [sys.executable, "-m", "pytest", "-p", "tests.sabotage",
                   "--dsn", self.admin_dsn, "--rows", str(rows), "--junitxml", str(junit), "-o", "junit_family=xunit2",
                   "--reports-dir", str(self.workdir / "reports"), *args]
        done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
        return SuiteRun(done.returncode, done.stdout + done.stderr, read_junit(junit) if junit.exists() else {},
                        newest_run_folder(self.workdir / "reports"))


def read_junit(path: Path) -> dict[str, Outcome]:
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):  # noqa: S314
        status, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                status = {"failure": "failed"}.get(tag, tag)
                message = (node.get("message") or "") + "\n" + (node.text or "")
        outcomes[case.get("name", "")] = Outcome(case.get("name", ""), status, message)
    return outcomes
