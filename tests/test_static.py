"""Static checks the CI runs with the tests: mypy --strict on the rotation library, ruff on everything."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).with_name(name))


def test_mypy_strict_on_the_rotation_library() -> None:
    from mypy import api

    stdout, stderr, status = api.run(["--config-file", str(PROJECT / "pyproject.toml"), "--cache-dir",
                                      str(PROJECT / ".mypy_cache")])
    assert status == 0, stdout[-6000:] + stderr[-2000:]


def test_ruff_is_clean() -> None:
    done = subprocess.run([tool("ruff"), "check", "."], cwd=PROJECT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
