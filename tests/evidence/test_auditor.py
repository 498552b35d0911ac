"""What an auditor relies on (issue 11): a pinned signer exposes a forged folder; a rehearsal claims no production
control and a live run with approver and change id does; a scenario that did not run makes the verdict INCOMPLETE in
the HTML, the JUnit properties and OSCAL; the OSCAL document is valid against NIST's schema, and not without a
finding's status; the standalone verifier in docs/ agrees with `rotation verify-evidence`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET  # noqa: S405  (our own run's JUnit file)
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rotation.cli import main as rotation_main
from rotation.evidence.chain import chain_lines
from rotation.evidence.signing import file_sha256, public_fingerprint
from tests.evidence.conftest import oscal_errors
from tests.evidence.project import NOT_APPLICABLE, run, run_folder
from tests.harness import PROJECT

STANDALONE = PROJECT / "docs" / "verify_run_folder.py"
LIVE = ("--target", "live", "--operator", "alice", "--approver", "bob", "--change-id", "CHG-1234")


def verify(capsys: pytest.CaptureFixture[str], folder: Path, *pin: str) -> tuple[int, str]:
    capsys.readouterr()
    code = rotation_main(["verify-evidence", str(folder), *pin])
    return code, capsys.readouterr().out


def standalone(folder: Path, *pin: str) -> int:
    """docs/verify_run_folder.py in a clean interpreter: hashlib and cryptography only, no rotation package."""
    done = subprocess.run([sys.executable, "-I", str(STANDALONE), str(folder), *pin], capture_output=True, text=True,
                          timeout=60, check=False)
    return done.returncode


def write_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key


def oscal(folder: Path) -> dict[str, object]:
    return json.loads((folder / "oscal-assessment-results.json").read_text())  # type: ignore[no-any-return]


def findings(document: dict[str, object]) -> dict[str, dict[str, object]]:
    result = document["assessment-results"]["results"][0]  # type: ignore[index]
    return {f["target"]["target-id"]: f for f in result.get("findings", [])}


def forge(folder: Path) -> None:
    """The forgery an auditor found: approver and change id edited, the chain rebuilt, the manifest re-signed with
    the forger's own key, and signing-key.pub.pem replaced."""
    entries = [json.loads(line) for line in (folder / "evidence.jsonl").read_text().splitlines()]
    entries[0] |= {"approver": "mallory", "change_id": "CHG-9999"}
    lines, head = chain_lines([{k: v for k, v in e.items() if k not in ("seq", "prev")} for e in entries])
    (folder / "evidence.jsonl").write_text("".join(f"{line}\n" for line in lines))
    forger = Ed25519PrivateKey.generate()
    (folder / "signing-key.pub.pem").write_bytes(forger.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest |= {"evidence_chain_head": head, "public_key_fingerprint": public_fingerprint(forger.public_key())}
    for name in ("evidence.jsonl", "signing-key.pub.pem"):
        manifest["files"][name]["sha256"] = file_sha256(folder / name)
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.sig").write_bytes(forger.sign(data))


def test_a_live_run_is_pinned_by_its_fingerprint_and_a_forgery_is_not(
        pytester: pytest.Pytester, project: Callable[..., Path], tmp_path: Path, oscal_schema: dict[str, object],
        capsys: pytest.CaptureFixture[str]) -> None:
    root = project()
    key = write_key(tmp_path / "evidence-signing.pem")
    real = public_fingerprint(key.public_key())
    result = run(pytester, *LIVE, f"--signing-key={tmp_path / 'evidence-signing.pem'}")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"signed by: {real} (configured: evidence-signing.pem)",
                                 f"verify with: rotation verify-evidence * --fingerprint {real}"])
    folder = run_folder(root)

    page = (folder / "index.html").read_text()
    assert real in page and "REHEARSAL" not in page and "per-run key" not in page
    assert ">satisfied<" in page and ">rehearsed<" not in page  # a live run with approver and change id
    assert page.rstrip().endswith("</html>") and page.index("Reviewer sign-off") > page.index("Environment")
    document = oscal(folder)
    assert oscal_errors(oscal_schema, document) == []
    assert findings(document)["PCI-3.7.5"]["target"]["status"] == {"state": "satisfied", "reason": "pass"}

    # The good folder: pinned, both verifiers say verified; unpinned, both say "intact, signer not verified".
    good = tmp_path / "good"
    shutil.copytree(folder, good)
    assert verify(capsys, good, "--fingerprint", real)[0] == 0 and standalone(good, "--fingerprint", real) == 0
    code, out = verify(capsys, good)
    assert code == 3 and f"--fingerprint {real}" in out and standalone(good) == 3

    forged = tmp_path / "forged"
    shutil.copytree(folder, forged)
    forge(forged)
    assert verify(capsys, forged)[0] == 3  # self-consistent: only a pin exposes it ...
    code, out = verify(capsys, forged, "--fingerprint", real)
    assert code == 1 and f"not the pinned signer {real}" in out, out
    assert standalone(forged, "--fingerprint", real) == 1 and standalone(forged) == 3
    public = tmp_path / "auditor.pub.pem"
    shutil.copyfile(folder / "signing-key.pub.pem", public)
    assert verify(capsys, forged, "--public-key", str(public))[0] == 1  # ... or the auditor's own copy of the key

    # A deleted line is one clear error, numbered from 1, in both verifiers; a changed byte is caught by both.
    cut = tmp_path / "cut"
    shutil.copytree(folder, cut)
    lines = (cut / "evidence.jsonl").read_text().splitlines(keepends=True)
    (cut / "evidence.jsonl").write_text("".join(lines[:4] + lines[5:]))
    code, out = verify(capsys, cut, "--fingerprint", real)
    problems = [line for line in out.splitlines() if line.startswith("MISMATCH")]
    assert code == 1 and problems == ["MISMATCH  evidence.jsonl line 5: 1 line missing before line 5 (seq 4 is "
                                      "followed by seq 6)"], out
    assert standalone(cut, "--fingerprint", real) == 1
    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    (changed / "index.html").write_text(page.replace("bob", "bog"))
    assert verify(capsys, changed, "--fingerprint", real)[0] == 1 and standalone(changed, "--fingerprint", real) == 1


@pytest.mark.parametrize(("args", "refusal"), [
    (("--approver", "bob", "--change-id", "CHG-1", "--operator", "alice"), "needs --signing-key"),
    (("--approver", "bob", "--change-id", "CHG-1", "--operator", "root", "--signing-key", "k.pem"),
     "'root' is an account, not a person"),
    (("--change-id", "CHG-1", "--operator", "alice", "--signing-key", "k.pem"), "needs --approver"),
])
def test_a_live_run_without_what_makes_its_evidence_reliable_is_refused(
        pytester: pytest.Pytester, project: Callable[..., Path], args: tuple[str, ...], refusal: str) -> None:
    root = project()
    refused = run(pytester, "--target", "live", *args)
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    assert refusal in refused.stderr.str()
    assert not (root / "reports").exists()


def test_a_rehearsal_claims_no_control_and_a_check_that_does_not_apply_makes_it_incomplete(
        pytester: pytest.Pytester, project: Callable[..., Path], oscal_schema: dict[str, object]) -> None:
    root = project(**{"checks.feature": NOT_APPLICABLE})
    result = run(pytester)
    result.assert_outcomes(passed=1, skipped=1)
    folder = run_folder(root)
    reason = "not applicable: no git repository at the app&#39;s path: there is nothing to check"

    page = (folder / "index.html").read_text()
    head = page[page.index("<body>"):page.index('id="details"')]  # the auditor's summary
    assert "REHEARSAL against staging stand-ins" in head and "signed with a per-run key" in head
    assert "Verdict: INCOMPLETE" in head and "A check that does not apply here" in head and reason in head
    assert ">satisfied<" not in page and ">rehearsed<" in page
    assert "not required (staging rehearsal)" in page and "Reviewer sign-off" in page

    suite = ET.parse(folder / "junit.xml").getroot().find("testsuite")  # noqa: S314
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["rotation.verdict"] == "INCOMPLETE"
    assert props["rotation.skipped"].startswith("A check that does not apply here: not applicable: no git")

    document = oscal(folder)
    assert oscal_errors(oscal_schema, document) == []
    result_props = {p["name"]: p["value"] for p in document["assessment-results"]["results"][0]["props"]}  # type: ignore[index]
    assert result_props["verdict"] == "INCOMPLETE" and "does not apply here" in result_props["scenario-skipped"]
    states = {cid: f["target"]["status"] for cid, f in findings(document).items()}  # type: ignore[index]
    assert states["SOC2-CC8.1"]["state"] == "not-satisfied" and states["SOC2-CC8.1"]["reason"] == "other"
    assert all(s["state"] != "satisfied" for cid, s in states.items() if cid != "PCI-8.3.9")
    assert states["PCI-8.3.9"] == {"state": "satisfied", "reason": "other", "remarks": states["PCI-8.3.9"]["remarks"]}

    # The schema test can fail: a finding without the status its target requires is rejected.
    del document["assessment-results"]["results"][0]["findings"][0]["target"]["status"]  # type: ignore[index]
    assert any("'status' is a required property" in e for e in oscal_errors(oscal_schema, document))
