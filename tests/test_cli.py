"""The `rotation` console script: subcommands are wired, and `rehearse` hands pytest's own options through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rotation.cli import COMMANDS
from tests.harness import PROJECT


def rotation(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rotation", *args], cwd="/", capture_output=True, text=True,
                          timeout=120, check=False, env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"})


def test_every_subcommand_has_help() -> None:
    listed = rotation("--help")
    assert listed.returncode == 0
    for command in COMMANDS:
        assert command in listed.stdout
        assert rotation(command, "--help").returncode == 0


def test_config_shows_the_commented_default_and_checks_a_file(tmp_path: Path) -> None:
    shown = rotation("config", "--show-default")
    assert shown.returncode == 0 and shown.stdout.startswith("# rotation.toml")
    copy = tmp_path / "rotation.toml"
    copy.write_text(shown.stdout)
    assert rotation("config", f"--config={copy}").returncode == 0
    copy.write_text(shown.stdout.replace("interval_days = 90", "interval_days = 90\nintervall_days = 30", 1))
    refused = rotation("config", f"--config={copy}")
    assert refused.returncode == 2 and "unknown key credentials.db_encryption_key.intervall_days" in refused.stderr


def test_rehearse_passes_pytest_options_through_from_any_directory() -> None:
    done = rotation("rehearse", "-m", "emergency", "--collect-only", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert collected and all("test_emergency.py" in line for line in collected), done.stdout


def test_unknown_arguments_are_refused_outside_rehearse() -> None:
    done = rotation("status", "--no-such-option")
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr
