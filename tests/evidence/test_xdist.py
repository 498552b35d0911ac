"""`pytest -n 2` writes one aggregated, signed run folder with the same scenarios, steps, counts and verdict as a
serial run of the same selection; both verify."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from rotation.evidence.verify import verify_folder
from tests.evidence.project import FEATURE, NOT_APPLICABLE
from tests.harness import PROJECT


def content(folder: Path) -> tuple[object, ...]:
    """What must not depend on how the run was spread over processes."""
    entries = [json.loads(line) for line in (folder / "evidence.jsonl").read_text().splitlines()]
    scenarios = [(e["nodeid"], e["status"], e["reason"]) for e in entries if e["type"] == "scenario"]
    steps = [(e["scenario"], e["keyword"], e["text"], e["status"]) for e in entries if e["type"] == "step"]
    items = sorted((e["scenario"] or "", e["step"] or "", e["name"]) for e in entries if e["type"] == "evidence")
    populations = [(e["scenario"], e["label"], e["verified"], e["total"]) for e in entries if e["type"] == "population"]
    verdict = next(e for e in entries if e["type"] == "verdict")
    run = entries[0]
    return (scenarios, steps, items, populations, verdict["verdict"], verdict["counts"], verdict["incomplete"],
            run["selected"], run["deselected"])


def run_folders(reports: Path) -> list[Path]:
    return [p for p in reports.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]


def test_xdist_writes_the_same_single_folder_as_a_serial_run(pytester: pytest.Pytester,
                                                             project: Callable[..., Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(**{"keyring.feature": FEATURE, "checks.feature": NOT_APPLICABLE})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])))
    flags = ("-p", "no:cacheprovider", "-p", "no:randomly")
    serial = pytester.runpytest_subprocess(*flags, "--reports-dir=serial", timeout=120)
    serial.assert_outcomes(passed=4, skipped=1)
    parallel = pytester.runpytest_subprocess(*flags, "-n", "2", "--reports-dir=parallel", timeout=180)
    parallel.assert_outcomes(passed=4, skipped=1)
    parallel.stdout.fnmatch_lines(["verdict: INCOMPLETE"])

    [one] = run_folders(root / "serial")
    folders = run_folders(root / "parallel")
    assert len(folders) == 1, folders  # one aggregated folder, not one per worker
    assert content(folders[0]) == content(one)
    assert verify_folder(one).passed and verify_folder(folders[0]).passed
    assert not list((root / "parallel" / ".journals").glob("*.jsonl"))  # the workers' journals are gone
