"""The `rotation` console script: subcommands are wired, and `rehearse` hands pytest's own options through."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import PROJECT


def rotation(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rotation", *args], cwd="/", capture_output=True, text=True,
                          timeout=120, check=False, env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"})


def test_every_subcommand_has_help() -> None:
    listed = rotation("--help")
    assert listed.returncode == 0
    for command in ("rehearse", "db-key", "status", "verify-evidence", "provider"):
        assert command in listed.stdout
        assert rotation(command, "--help").returncode == 0


def test_rehearse_passes_pytest_options_through_from_any_directory() -> None:
    done = rotation("rehearse", "-m", "emergency", "--collect-only", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert collected and all("test_emergency.py" in line for line in collected), done.stdout


def test_unknown_arguments_are_refused_outside_rehearse() -> None:
    done = rotation("status", "--no-such-option")
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr
