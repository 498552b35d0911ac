"""`rotation verify-evidence`: exit 0 on a folder as written, non-zero naming the file for any one changed byte,
and each of its checks (file hashes, hash chain, signature, key) shown failing on its own."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rotation.cli import main as rotation_main
from rotation.evidence.signing import file_sha256, public_fingerprint
from tests.evidence.project import run, run_folder


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = rotation_main(["verify-evidence", *args])
    return code, capsys.readouterr().out


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    position = next(i for i in range(middle, len(data)) if 0x30 <= data[i] < 0x7B)  # an ASCII letter or digit
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


def write_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key


def write_public(path: Path, key: Ed25519PrivateKey) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


@pytest.fixture
def folder(pytester: pytest.Pytester, project: Callable[..., Path], tmp_path: Path) -> Path:
    root = project()
    run(pytester).assert_outcomes(passed=3)
    copy = tmp_path / "copy"
    shutil.copytree(run_folder(root), copy)
    return copy


def test_an_untouched_folder_verifies(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fingerprint = json.loads((folder / "manifest.json").read_text())["public_key_fingerprint"]
    code, out = verify(capsys, str(folder), "--fingerprint", fingerprint)
    assert code == 0, out
    assert "hash chain intact" in out and "valid Ed25519 signature" in out


@pytest.mark.parametrize("name", ["evidence.jsonl", "index.html", "manifest.json", "manifest.sig",
                                  "oscal-assessment-results.json", "junit.xml"])
def test_one_changed_byte_fails_and_names_the_file(folder: Path, name: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    flip_one_byte(folder / name)
    code, out = verify(capsys, str(folder))
    assert code == 1
    assert any(line.startswith("MISMATCH") and name in line for line in out.splitlines()), out


def test_an_added_or_removed_file_fails(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "extra.txt").write_text("added after signing\n")
    (folder / "cucumber.json").unlink()
    code, out = verify(capsys, str(folder))
    assert code == 1
    assert "extra.txt: present but not listed" in out and "cucumber.json: listed in manifest.json but missing" in out


def test_not_a_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(capsys, str(tmp_path / "missing"))[0] == 2


def test_a_configured_key_signs_and_the_chain_is_checked_on_its_own(
        pytester: pytest.Pytester, project: Callable[..., Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = project()
    key = write_key(tmp_path / "signing.pem")
    monkeypatch.setenv("ROTATION_SIGNING_KEY", str(tmp_path / "signing.pem"))
    run(pytester).assert_outcomes(passed=3)
    folder = run_folder(root)
    public = write_public(tmp_path / "auditor.pub.pem", key)
    assert "configured: signing.pem" in (folder / "index.html").read_text()
    assert verify(capsys, str(folder), "--public-key", str(public))[0] == 0

    # Someone holding the signing key rewrites a line and re-signs: file hashes and signature pass, the chain does not.
    chain = folder / "evidence.jsonl"
    lines = chain.read_text().splitlines()
    entry = json.loads(lines[2])
    entry["forged"] = True
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    chain.write_text("".join(f"{line}\n" for line in lines))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["evidence.jsonl"]["sha256"] = file_sha256(chain)
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.sig").write_bytes(key.sign(data))
    code, out = verify(capsys, str(folder), "--public-key", str(public))
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith("MISMATCH")]
    assert problems and all("evidence.jsonl" in line for line in problems), out
    assert "line 4: previous-line hash does not match (line 3 was changed)" in out


def test_a_folder_re_signed_with_another_key_fails_against_the_auditors_key(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = tmp_path / "original.pub.pem"
    shutil.copyfile(folder / "signing-key.pub.pem", original)
    flip_one_byte(folder / "index.html")
    forger = Ed25519PrivateKey.generate()
    write_public(folder / "signing-key.pub.pem", forger)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["public_key_fingerprint"] = public_fingerprint(forger.public_key())
    for name in ("index.html", "signing-key.pub.pem"):
        manifest["files"][name]["sha256"] = file_sha256(folder / name)
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.sig").write_bytes(forger.sign(data))

    code, out = verify(capsys, str(folder))
    assert code == 3 and "signer not verified" in out  # a complete forgery is self-consistent ...
    code, out = verify(capsys, str(folder), "--public-key", str(original))
    assert code == 1 and "does not verify" in out  # ... and only the auditor's own copy of the key exposes it
