"""Which code ran: the evidence names the package version, the SHA-256 of each feature file a selected scenario comes
from, and a git commit only when the library is a tracked file of a checkout (never the commit of a checkout that
merely holds an installed package's virtual environment); without one it says what identifies the code instead.
The installed case end to end: tests/test_install.py."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest

import rotation
from rotation.cli import main as rotation_main
from rotation.evidence.metadata import RunMetadata, git_state
from rotation.evidence.recorder import utc_now
from rotation.evidence.signing import file_sha256
from tests.evidence.project import FAILING, FEATURE, run, run_folder


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def test_rotation_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        rotation_main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"rotation (rotation-runbook) {metadata.version('rotation-runbook')}"
    assert rotation.__version__ == metadata.version("rotation-runbook")


def test_git_state_names_a_commit_only_for_a_tracked_file(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text(".venv/\n")
    (repo / "lib.py").write_text("x = 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    head = git(repo, "rev-parse", "HEAD")
    assert git_state(repo / "lib.py") == (head, False)
    (repo / "lib.py").write_text("x = 2\n")
    assert git_state(repo / "lib.py") == (head, True)

    installed = repo / ".venv" / "lib" / "site-packages" / "rotation" / "__init__.py"  # a venv inside a checkout
    installed.parent.mkdir(parents=True)
    installed.write_text("")
    assert git_state(installed) == (None, None)
    outside = tmp_path / "elsewhere" / "__init__.py"
    outside.parent.mkdir()
    outside.write_text("")
    assert git_state(outside) == (None, None)


def test_without_a_commit_the_evidence_says_what_identifies_the_code() -> None:
    bare = RunMetadata(run_id="r", target="staging", operator="o", approver=None, change_id=None, started=utc_now())
    assert bare.git_commit is None
    assert f"rotation-runbook {bare.suite_version}, not run from a git checkout" in bare.code_identity
    assert "SHA-256 of each feature file" in bare.code_identity
    checkout = RunMetadata(run_id="r", target="staging", operator="o", approver=None, change_id=None,
                           started=utc_now(), git_commit="abc123", git_dirty=True)
    assert "commit abc123 with uncommitted changes" in checkout.code_identity


def test_the_run_records_the_digest_of_each_selected_feature_file(pytester: pytest.Pytester,
                                                                  project: Callable[..., Path]) -> None:
    root = project(**{"keyring.feature": FEATURE, "failing.feature": FAILING})
    run(pytester, "-k", "Populations")  # only keyring.feature's outline is selected
    folder = run_folder(root)
    meta = json.loads((folder / "evidence.jsonl").read_text().splitlines()[0])
    digest = f"sha256:{file_sha256(root / 'features' / 'keyring.feature')}"
    assert meta["feature_digests"] == {"features/keyring.feature": digest}
    assert meta["suite_version"] == rotation.__version__ and meta["code_identity"]
    page = (folder / "index.html").read_text()
    assert digest in page and meta["code_identity"] in page
