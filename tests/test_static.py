"""Static checks: mypy --strict on every package (pyproject's [tool.mypy] packages), ruff on everything. .ci/run
runs both tools itself before the tests (and deselects these), so in CI they fail fast with the tool's own report;
here they keep `pytest tests` on a laptop complete."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).with_name(name))


def test_mypy_strict_on_every_package() -> None:
    from mypy import api

    stdout, stderr, status = api.run(["--config-file", str(PROJECT / "pyproject.toml"), "--cache-dir",
                                      str(PROJECT / ".mypy_cache")])
    assert status == 0, stdout[-6000:] + stderr[-2000:]


def test_ruff_is_clean() -> None:
    done = subprocess.run([tool("ruff"), "check", "."], cwd=PROJECT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
