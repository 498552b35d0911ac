"""Run the suite's scenarios the way an operator does (a real `pytest` subprocess) and read back what happened."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import xml.etree.ElementTree as ET  # noqa: S405  (our own pytest's JUnit file)
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def seeded_crm(admin_dsn: str, rows: int) -> Iterator[tuple[str, str]]:
    """A scratch CRM database with both schemas and `rows` seeded clients: yields (dsn, the key they are under)."""
    import psycopg

    from rotation.core.database import apply_runbook_schema
    from rotation.core.keys import generate_key
    from staging.crm import apply_crm_schema
    from staging.postgres import scratch_database
    from staging.seed import seed_clients

    with scratch_database(admin_dsn) as dsn:
        key = generate_key()
        with psycopg.connect(dsn) as conn:
            apply_crm_schema(conn)
            apply_runbook_schema(conn)
        seed_clients(dsn, key, rows)
        yield dsn, key


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # passed / failed / skipped / error
    message: str = ""


@dataclass(frozen=True)
class SuiteRun:
    returncode: int
    output: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def only(self) -> Outcome:
        assert len(self.outcomes) == 1, f"expected one scenario, ran {list(self.outcomes)}\n{self.output[-3000:]}"
        return next(iter(self.outcomes.values()))


@dataclass(frozen=True)
class SuiteRunner:
    admin_dsn: str
    workdir: Path

    def run(self, *args: str, sabotage: str | None = None, rows: int = 200, timeout_s: float = 300) -> SuiteRun:
        junit = self.workdir / f"junit-{len(list(self.workdir.glob('junit-*')))}.xml"
        env = {**os.environ, "PYTHONPATH": str(PROJECT)}
        if sabotage:
            env["ROTATION_SABOTAGE"] = sabotage
        command = [sys.executable, "-m", "pytest", "-p", "tests.sabotage",
                   "--dsn", self.admin_dsn, "--rows", str(rows), "--junitxml", str(junit), "-o", "junit_family=xunit2",
                   "--reports-dir", str(self.workdir / "reports"), *args]
        done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
        return SuiteRun(done.returncode, done.stdout + done.stderr, read_junit(junit) if junit.exists() else {})


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
