"""`rotation db-key rotate` as an operator runs it (the feature, live, against a scratch CRM and the app stand-in):
its evidence is the feature's scheduled scenario step by step, signed; killed with SIGKILL after any step, the same
command again finishes the same rotation, and the evidence of both runs names it.

The kill after each step gets a world of its own (scratch database, .env, app stand-in); two kills run at a time, as
the subprocesses leave a core idle otherwise (CI time)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rotation.evidence.verify import verify_folder
from staging.postgres import StagingServer
from tests.rotation.live_crm import LiveCrm, live_crm, scheduled_steps

ROWS = 30
STEPS = scheduled_steps()
TEXTS = [s.split(" ", 1)[1] for s in STEPS]
GENERATED = TEXTS.index("a new database encryption key is generated")


@pytest.fixture
def crm(pg: StagingServer, tmp_path: Path) -> Iterator[LiveCrm]:
    with live_crm(pg.admin_dsn, tmp_path, ROWS) as world:
        yield world


def test_rotate_leaves_signed_evidence_listing_the_features_steps(crm: LiveCrm) -> None:
    done = crm.rotate()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    crm.assert_rotated()
    [run] = crm.folders()
    verified = verify_folder(run.path)
    assert verified.passed, verified.problems
    assert [s.step for s in run.steps()] == STEPS
    assert all(s.status == "passed" for s in run.steps())
    assert run.scenario()["status"] == "passed" and "scheduled" in run.scenario()["tags"]  # type: ignore[operator]
    assert len(run.rotation_ids()) == 1
    assert crm.old_key.reveal() not in done.stdout + done.stderr
    assert crm.key_in_env().reveal() not in done.stdout + done.stderr


def _kill_then_rerun(crm: LiveCrm, step: str) -> None:
    killed = crm.rotate(kill_after=step)
    assert killed.returncode == -9, f"not killed after '{step}': exit {killed.returncode}\n{killed.stdout[-2000:]}"
    again = crm.rotate("resume" if TEXTS.index(step) % 2 else "rotate")  # the two are the same command
    assert again.returncode == 0, f"after a kill after '{step}':\n{again.stdout[-3000:]}{again.stderr[-2000:]}"
    crm.assert_rotated()
    first, second = crm.folders()
    assert verify_folder(first.path).passed and verify_folder(second.path).passed
    cut = first.scenario()
    assert cut["status"] == "error" and f"after step '{STEPS[TEXTS.index(step)]}'" in str(cut["reason"]), cut
    assert [s.step for s in second.steps()] == STEPS and all(s.status == "passed" for s in second.steps())
    ids = second.rotation_ids()
    assert len(ids) == 1, ids
    assert first.rotation_ids() == (ids if TEXTS.index(step) >= GENERATED else set()), step


def _one_kill(admin_dsn: str, workdir: Path, step: str) -> str | None:
    """None when a kill after `step` and the same command again finished the same rotation; else what went wrong."""
    try:
        with live_crm(admin_dsn, workdir, ROWS) as world:
            _kill_then_rerun(world, step)
    except AssertionError as exc:
        return f"killed after '{step}': {exc}"
    return None


def test_killed_after_any_step_the_same_command_finishes_the_same_rotation(pg: StagingServer, tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for p in pool.map(lambda n: _one_kill(pg.admin_dsn, tmp_path / f"kill-{n}", TEXTS[n]),
                                        range(len(TEXTS))) if p]
    assert not problems, "\n\n".join(problems)
