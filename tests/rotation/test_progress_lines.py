"""The operator sees progress: `rotation db-key rotate ... --confirm-live` under a pseudo-terminal shows, while the
staging of the client table runs, lines with rows done of the total, the rate and the ETA, then the step's `ok` line;
`--progress=off` (a quiet CI log) removes them and nothing else. No line holds a key.

The staging is throttled (--max-rate) so that it lasts a few seconds whatever the machine's speed: the lines are paced
by the share done (a tenth, at most one a second), so several appear; nothing here is timed."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from staging.postgres import StagingServer
from tests.harness import PROJECT
from tests.leakcheck import assert_no_fragment
from tests.rotation.live_crm import SPEC, LiveCrm, live_crm

ROWS = 3000
MAX_RATE = "--max-rate=1000"  # at least 3 s of staging, pages of 250 rows
STAGE_STEP = "all sensitive data is prepared under the new key while the application still runs"
PROGRESS = re.compile(rf"  \.\.   staging {SPEC.table}: (?P<done>[\d,]+)/(?P<total>[\d,]+) rows \(\d+%\), "
                      r"[\d,.]+ rows/s, ETA \S+\r?\n")
FINAL = re.compile(rf"  \.\.   staging {SPEC.table}: (?P<total>[\d,]+) rows in \S+, [\d,.]+ rows/s\r?\n")
STAGE_OK = re.compile(rf"  ok +[\d.]+s  When {re.escape(STAGE_STEP)}")
ANY_PROGRESS = re.compile(r"^  \.\.   ", re.MULTILINE)


@pytest.fixture
def crm(pg: StagingServer, tmp_path: Path) -> Iterator[LiveCrm]:
    with live_crm(pg.admin_dsn, tmp_path, ROWS) as world:
        world.extra = (MAX_RATE,)
        yield world


def spawn(crm: LiveCrm, *extra: str) -> tuple[pexpect.spawn, io.StringIO]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_TEST_", "PYTEST_ADDOPTS"))}
    command = [*crm.command(), *extra]
    child = pexpect.spawn(command[0], command[1:], cwd=str(PROJECT), env={**env, "PYTHONPATH": str(PROJECT)},
                          encoding="utf-8", timeout=240, dimensions=(50, 250))
    child.logfile_read = screen = io.StringIO()
    return child, screen


def test_progress_lines_with_rate_and_eta_appear_while_the_staging_runs(crm: LiveCrm) -> None:
    child, screen = spawn(crm)
    seen: list[tuple[float, int]] = []
    try:
        while child.expect([PROGRESS, FINAL]) == 0:  # in the order the terminal shows them
            assert child.match is not None
            done, total = (int(child.match[k].replace(",", "")) for k in ("done", "total"))
            assert 0 < done < total == ROWS, child.match[0]
            seen.append((time.monotonic(), done))
        assert child.match is not None and int(child.match["total"].replace(",", "")) == ROWS
        final_at = time.monotonic()
        child.expect(STAGE_OK)  # the step ends after its lines: they came while it ran
        child.expect(pexpect.EOF)
    finally:
        child.close()
    shown = screen.getvalue()
    assert child.exitstatus == 0, shown[-3000:]
    assert len(seen) >= 2, shown[-3000:]
    assert [d for _, d in seen] == sorted(d for _, d in seen), seen
    assert all(at <= final_at for at, _ in seen)
    crm.assert_rotated()
    assert_no_fragment({"terminal": shown.encode()}, [crm.old_key.reveal(), crm.key_in_env().reveal()])


def test_the_quiet_option_removes_the_progress_lines_and_nothing_else(crm: LiveCrm) -> None:
    child, screen = spawn(crm, "--progress=off")
    try:
        child.expect(STAGE_OK)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    shown = screen.getvalue()
    assert child.exitstatus == 0, shown[-3000:]
    assert not ANY_PROGRESS.search(shown), ANY_PROGRESS.findall(shown)
    assert "SCENARIO Scheduled 90-day rotation of the database encryption key" in shown
    crm.assert_rotated()
