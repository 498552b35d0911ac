"""The run folder a scenario run leaves: every artifact, the HTML's content, OSCAL validity, failures shown
everywhere, the live-run guard, and Chromium rendering and printing the page."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET  # noqa: S405  (a file our own run wrote)
from collections.abc import Callable
from pathlib import Path

import pytest

from rotation.cli import main as rotation_main
from rotation.evidence.chain import verify_chain
from tests.evidence.project import FAILING, run, run_folder

ARTIFACTS = {"index.html", "evidence.jsonl", "junit.xml", "cucumber.json", "oscal-assessment-results.json",
             "manifest.json", "manifest.sig", "signing-key.pub.pem"}


def test_a_scenario_run_writes_a_verifiable_folder(pytester: pytest.Pytester, project: Callable[..., Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = project()
    result = run(pytester, "--operator", "alice")
    result.assert_outcomes(passed=3)
    folder = run_folder(root)
    assert folder.name.endswith("-staging")
    assert {p.name for p in folder.iterdir()} == ARTIFACTS
    capsys.readouterr()
    fingerprint = json.loads((folder / "manifest.json").read_text())["public_key_fingerprint"]
    assert rotation_main(["verify-evidence", str(root / "reports" / "latest"), "--fingerprint", fingerprint]) == 0
    assert "verified, signed by" in capsys.readouterr().out

    page = (folder / "index.html").read_text()
    assert "<script" not in page.lower()
    assert "Verdict: PASSED" in page and "alice" in page
    assert "3 of 3 values verified under the new key" in page and "20 of 20 values verified" in page
    assert "UPDATE ring SET v = enc(dec(v, $old), $new)" in page  # the source of an item
    assert "PCI DSS 4.0.1 8.3.9" in page and "Not applicable: 8.3.9 concerns passwords of human users" in page
    assert "break-inside: avoid" in page and "break-after: avoid" in page
    assert "3 selected, 0 deselected" in page

    lines = [json.loads(line) for line in (folder / "evidence.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "run" and lines[0]["operator"] == "alice" and lines[-1]["verdict"] == "PASSED"
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))  # seq is the 1-based line number
    item = next(e for e in lines if e.get("name") == "re-encryption")
    assert item["collected"].endswith("Z") and item["step"] == "When 3 values are re-encrypted"
    assert verify_chain(folder / "evidence.jsonl")[1] == []


def test_selection_is_recorded(pytester: pytest.Pytester, project: Callable[..., Path]) -> None:
    root = project()
    run(pytester, "-k", "Populations").assert_outcomes(passed=2)
    page = (run_folder(root) / "index.html").read_text()
    assert "2 selected, 1 deselected" in page and "-k &#39;Populations&#39;" in page


def test_a_run_without_scenarios_writes_no_report(pytester: pytest.Pytester, project: Callable[..., Path]) -> None:
    root = project()
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    run(pytester, "test_plain.py").assert_outcomes(passed=1)
    assert not (root / "reports").exists()


def test_a_failing_scenario_is_failed_in_html_junit_and_oscal(pytester: pytest.Pytester,
                                                              project: Callable[..., Path]) -> None:
    root = project(**{"failing.feature": FAILING})
    result = run(pytester)
    result.assert_outcomes(failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    folder = run_folder(root)
    reason = "only 2 of 3 values verify under the new key"

    page = (folder / "index.html").read_text()
    assert "Verdict: FAILED" in page and reason in page
    assert "2 of 3 values verified under the new key" in page
    assert "no step definition matches this step" in page and ">undefined<" in page

    cases = {c.get("name"): c for c in ET.parse(folder / "junit.xml").getroot().iter("testcase")}  # noqa: S314
    failure = cases["test_one_value_does_not_verify"].find("failure")
    assert failure is not None and reason in (failure.get("message") or "")

    results = json.loads((folder / "oscal-assessment-results.json").read_text())["assessment-results"]["results"][0]
    finding = next(f for f in results["findings"] if f["target"]["target-id"] == "PCI-3.7.5")
    assert finding["target"]["status"]["state"] == "not-satisfied" and reason in finding["description"]
    assert any(reason in o["description"] for o in results["observations"])


def test_oscal_validates_with_trestle(pytester: pytest.Pytester, project: Callable[..., Path]) -> None:
    trestle = pytest.importorskip("trestle.oscal.assessment_results")
    root = project(**{"failing.feature": FAILING})
    run(pytester)
    document = run_folder(root) / "oscal-assessment-results.json"
    model = trestle.AssessmentResults.oscal_read(document)
    assert model is not None
    findings = {f.target.target_id: f for f in model.results[0].findings}
    assert _text(findings["PCI-3.7.5"].target.status.state) == "not-satisfied"
    assert _text(findings["PCI-8.3.9"].target.implementation_status.state) == "not-applicable"
    assert len(model.results[0].observations) >= 2


def _text(value: object) -> str:
    return str(getattr(value, "value", value))  # trestle may hand back the enum or its value


def test_a_broken_oscal_document_fails_trestle(tmp_path: Path) -> None:
    """The validation above can fail: a finding with an unknown status state is rejected."""
    trestle = pytest.importorskip("trestle.oscal.assessment_results")
    bad = {"assessment-results": {"uuid": "not-a-uuid", "metadata": {}, "import-ap": {"href": "#"}, "results": []}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(Exception):  # noqa: B017  (pydantic's ValidationError, re-raised by trestle)
        trestle.AssessmentResults.oscal_read(tmp_path / "bad.json")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_chromium_renders_and_prints_the_report(pytester: pytest.Pytester, project: Callable[..., Path],
                                                tmp_path: Path) -> None:
    root = project(**{"failing.feature": FAILING})
    run(pytester)
    page = run_folder(root) / "index.html"
    png, pdf = tmp_path / "report.png", tmp_path / "report.pdf"
    with tempfile.TemporaryDirectory() as profile:
        flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}"]
        subprocess.run([*flags, "--window-size=1200,1600", f"--screenshot={png}", page.as_uri()],
                       capture_output=True, timeout=90, check=True)
        subprocess.run([*flags, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri()],
                       capture_output=True, timeout=90, check=True)
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page") - data.count(b"/Type /Pages") >= 2


def test_cucumber_json_records_the_target(pytester: pytest.Pytester, project: Callable[..., Path]) -> None:
    """A dashboard reading cucumber.json alone cannot take a rehearsal for a production change: every feature and
    scenario carries @target:staging."""
    root = project()
    run(pytester, "--cucumberjson", str(pytester.path / "cucumber.json")).assert_outcomes(passed=3)
    features = json.loads((run_folder(root) / "cucumber.json").read_text())
    nodes = features + [e for f in features for e in f["elements"]]
    assert len(nodes) == 1 + 3
    assert all([t["name"] for t in n["tags"] if t["name"].startswith("@target:")] == ["@target:staging"]
               for n in nodes)


def test_a_print_that_cannot_be_made_fails_the_run_saying_why(pytester: pytest.Pytester,
                                                               project: Callable[..., Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """--evidence-pdf=yes without a usable Chromium: no report.pdf, the verdict FAILED with the reason."""
    root = project()
    monkeypatch.setenv("ROTATION_CHROMIUM", str(pytester.path / "no-such-chromium"))
    result = run(pytester, "--evidence-pdf=yes")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    folder = run_folder(root)
    assert not (folder / "report.pdf").exists()
    verdict = json.loads((folder / "evidence.jsonl").read_text().splitlines()[-1])
    assert verdict["verdict"] == "FAILED"
    assert any("could not be printed to report.pdf: no Chromium found" in r for r in verdict["reasons"]), verdict
