"""`rotation db-key rotate` as an operator runs it (the feature, live, against a scratch CRM and the app stand-in):
its evidence is the feature's scheduled scenario step by step, signed; killed with SIGKILL after any step, the same
command again finishes the same rotation, and the evidence of both runs names it.

The kills follow one another in one world (scratch database, .env, app stand-in): each run is killed after the next
step that writes, so every kill's state is taken up by a run of the same command (CI time: one run per step, not
two)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotation.evidence.verify import verify_folder
from staging.postgres import StagingServer
from staging.world import probe_config
from tests.leakcheck import assert_no_fragment
from tests.rotation.live_crm import LiveCrm, live_crm, scheduled_steps

ROWS = 30
STEPS = scheduled_steps()
TEXTS = [s.split(" ", 1)[1] for s in STEPS]
GENERATED = TEXTS.index("a new database encryption key is generated")
# Then steps that only read (no state, .env or database write in DbKeyRotation): a kill after one leaves exactly what
# a kill after the step before it leaves, so the crash test kills after every other step (CI time).
READ_ONLY = ("the .env file keeps its restrictive permissions and every other setting",
             "the values no key opens and the other writers of the encrypted data are found before the application "
             "stops",
             "no encrypted value decrypts with the old key",
             "the rotation log records it with the previous key hash and the next rotation due date",
             "the system is healthy after the rotation")
KILLS = [t for t in TEXTS if t not in READ_ONLY]
GENERATED_KILL = KILLS.index("a new database encryption key is generated")  # runs killed before it name no rotation


@pytest.fixture
def crm(pg: StagingServer, tmp_path: Path) -> Iterator[LiveCrm]:
    with live_crm(pg.admin_dsn, tmp_path, ROWS) as world:
        yield world


def test_rotate_leaves_signed_evidence_listing_the_features_steps(crm: LiveCrm, tmp_path: Path) -> None:
    """Against an app whose /health has only the real body: the key is proven by the configured probe, and the
    evidence names that proof."""
    crm.config = probe_config(tmp_path / "rotation.toml", crm.app)
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
    [proof] = [e["value"] for e in run.entries() if e["type"] == "evidence" and e["name"] == "key loaded by the app"]
    assert isinstance(proof, dict) and proof["proof"] == "probe (URL)" and proof["matches the value under the key"]
    assert_no_fragment({"output": (done.stdout + done.stderr).encode()}, [crm.old_key.reveal(),
                                                                         crm.key_in_env().reveal()])


def test_a_failing_live_run_leaves_no_key_fragment_anywhere(crm: LiveCrm, tmp_path: Path) -> None:
    """The app comes back on the old key (its probe cannot read the data): the run fails at the proof, and no
    fragment of 12 or more characters of either key is in reports/, the terminal output, JUnit or cucumber files."""
    crm.config = probe_config(tmp_path / "rotation.toml", crm.app)
    junit, cucumber = tmp_path / "out" / "junit.xml", tmp_path / "out" / "cucumber.json"
    junit.parent.mkdir()
    done = crm.rotate(addopts=f"-p tests.sabotage --junitxml={junit} --cucumberjson={cucumber}",
                      environ={"ROTATION_SABOTAGE": "db-key:app-keeps-old-key"})
    assert done.returncode != 0, done.stdout[-3000:]
    [run] = crm.folders()
    [failed] = [s for s in run.steps() if s.status == "failed"]
    assert failed.step == "And the encryption key loaded by the application is the new key", failed
    assert "the app could not read" in str(failed.error)
    places = {"terminal output": (done.stdout + done.stderr).encode(), "junit": junit.read_bytes(),
              "cucumber": cucumber.read_bytes()}
    places |= {str(p): p.read_bytes() for p in crm.reports.rglob("*") if p.is_file()}
    assert len(places) > 5, "the run wrote less than expected: the search would prove little"
    assert_no_fragment(places, [crm.old_key.reveal(), crm.key_in_env().reveal()])
    assert (run.path.stat().st_mode & 0o777) == 0o700
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in run.path.iterdir() if p.is_file())


def test_killed_after_any_step_the_same_command_finishes_the_same_rotation(crm: LiveCrm) -> None:
    """Killed right after the first step that writes; the same command again, killed right after the next; and so on
    (rotate and resume alternate: they are the same command). Each run takes up what the kill before it left and
    passes every step up to its own kill (a failing step would end it with an exit code, not the kill); the last run
    finishes: every value reads back under the new key, none under the old, and the evidence of every run (each
    killed run's journal sealed by the next) names the one rotation."""
    assert set(READ_ONLY) <= set(TEXTS) and len(KILLS) == len(TEXTS) - len(READ_ONLY), TEXTS
    crm.extra = ("--take-over-lock",)  # each killed run leaves its lock record: the operator takes it over
    for n, step in enumerate(KILLS):
        killed = crm.rotate("resume" if n % 2 else "rotate", kill_after=step)
        assert killed.returncode == -9, (f"killed after {KILLS[n - 1] if n else 'nothing'!r}, the same command did "
                                         f"not get past {step!r}: exit {killed.returncode}\n{killed.stdout[-3000:]}")
    final = crm.rotate()
    assert final.returncode == 0, f"after the last kill:\n{final.stdout[-3000:]}{final.stderr[-2000:]}"
    crm.assert_rotated()
    runs = crm.folders()
    assert len(runs) == len(KILLS) + 1, [r.path.name for r in runs]
    for run, step in zip(runs, KILLS, strict=False):
        assert verify_folder(run.path).passed, run.path.name
        cut = run.scenario()
        assert cut["status"] == "error" and f"after step '{STEPS[TEXTS.index(step)]}'" in str(cut["reason"]), cut
    assert [s.step for s in runs[-1].steps()] == STEPS and all(s.status == "passed" for s in runs[-1].steps())
    assert not any(run.rotation_ids() for run in runs[:GENERATED_KILL]), "a rotation id before the key was generated"
    ids = set().union(*(run.rotation_ids() for run in runs))
    assert len(ids) == 1 and runs[-1].rotation_ids() == ids, ids
