"""The openssl recipe of docs/evidence.md, run as it is written there (bash, openssl, coreutils): it verifies a genuine
folder against the signer's fingerprint from outside the folder, and fails a forged folder that someone rewrote and
re-signed with a key of their own (which verifies against the folder's own key: the circular check the recipe must not
be)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rotation.evidence.signing import public_fingerprint, write_signed_manifest
from tests.evidence.project import run, run_folder

DOC = Path(__file__).resolve().parents[2] / "docs" / "evidence.md"
HEADING = "### Verifying with openssl alone"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("bash") is None,
                                reason="openssl and bash are what the recipe uses")


def recipe() -> str:
    text = DOC.read_text(encoding="utf-8")
    after = text[text.index(HEADING):]
    found = re.search(r"```bash\n(.*?)```", after, re.S)
    assert found is not None, f"no bash block after {HEADING!r} in {DOC}"
    return found.group(1)


def run_recipe(folder: Path, pin: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUN": str(folder), "PIN": pin, "TMPDIR": str(tmp_path)}
    return subprocess.run(["bash", "-c", recipe()], capture_output=True, text=True, env=env, timeout=60,
                          check=False)


@pytest.fixture
def folder(pytester: pytest.Pytester, project: Callable[..., Path], tmp_path: Path) -> Path:
    root = project()
    run(pytester).assert_outcomes(passed=3)
    copy = tmp_path / "copy"
    shutil.copytree(run_folder(root), copy)
    return copy


def forge(folder: Path) -> None:
    """What a forger can do without the signing key: change the report, replace the key, rebuild and re-sign the
    manifest. The folder is then self-consistent."""
    page = folder / "index.html"
    page.write_text(page.read_text(encoding="utf-8").replace("PASSED", "PASSED (forged)"), encoding="utf-8")
    forger = Ed25519PrivateKey.generate()
    (folder / "signing-key.pub.pem").write_bytes(forger.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    manifest = json.loads((folder / "manifest.json").read_text())
    keep = {k: v for k, v in manifest.items() if k not in ("files", "format")}
    keep["public_key_fingerprint"] = public_fingerprint(forger.public_key())
    (folder / "manifest.json").unlink()
    (folder / "manifest.sig").unlink()
    write_signed_manifest(folder, forger, keep)


def test_the_recipe_verifies_a_genuine_folder_against_the_pinned_fingerprint(folder: Path, tmp_path: Path) -> None:
    pin = json.loads((folder / "manifest.json").read_text())["public_key_fingerprint"]
    done = run_recipe(folder, pin, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED" in done.stdout


def test_the_recipe_fails_a_forged_re_signed_folder(folder: Path, tmp_path: Path) -> None:
    pin = json.loads((folder / "manifest.json").read_text())["public_key_fingerprint"]  # from the record, before
    forge(folder)
    circular = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "signing-key.pub.pem", "-rawin",
                               "-in", "manifest.json", "-sigfile", "manifest.sig"], cwd=folder, capture_output=True,
                              text=True, check=False)
    assert circular.returncode == 0, circular.stderr  # the folder's own key happily verifies the forgery
    done = run_recipe(folder, pin, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED: signing-key.pub.pem is" in done.stdout and "not the pinned signer" in done.stdout


def test_the_recipe_fails_a_changed_file_even_when_signed_by_the_pinned_key(folder: Path, tmp_path: Path) -> None:
    pin = json.loads((folder / "manifest.json").read_text())["public_key_fingerprint"]
    (folder / "junit.xml").write_text((folder / "junit.xml").read_text() + "<!-- changed -->")
    done = run_recipe(folder, pin, tmp_path)
    assert done.returncode == 1 and "FAILED: a file differs" in done.stdout, done.stdout + done.stderr
