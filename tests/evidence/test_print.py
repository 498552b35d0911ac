"""The print an auditor keeps: a DB-key rehearsal (`-m db_encryption_key` in staging) with `--evidence-pdf=yes` leaves
report.pdf in the run folder, sealed by the manifest, printed by Chromium with the tool's own running header and
footer. Read back with pdftotext (poppler-utils), the print holds every decisive fact whole (the downtime window, the
proof that the app reads its data under the new key, every population figure), marks every page REHEARSAL with the
run id and "page x of y", keeps developer terms off the auditor's summary pages, has body text of 9 pt or more and
writes every time one way (UTC, to the millisecond)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

from rotation.evidence.auditor import stamp
from rotation.evidence.pdf import Running, find_chromium, render_pdf
from rotation.evidence.signing import file_sha256
from staging.postgres import StagingServer
from tests.harness import SuiteRunner, read_evidence

pytestmark = pytest.mark.skipif(find_chromium() is None or shutil.which("pdftotext") is None,
                                reason="chromium and pdftotext (poppler-utils) are needed; .ci/run installs both")

DEVELOPER_TERMS = ("@xdist_group", "@staging_only", "ReencryptionError", "ctid, xmin", "more characters")
BOX_PER_EM = 1.164  # pdftotext's word box is the font's ascent + descent: 1.164 em for DejaVu Sans (and Sans Mono)


def pages_text(pdf: Path) -> list[str]:
    """The PDF's text page by page, in the order it was printed (a table cell stays together), pages apart."""
    done = subprocess.run(["pdftotext", "-raw", str(pdf), "-"], capture_output=True, text=True, check=True)
    return done.stdout.split("\f")[:-1]


def word_heights(pdf: Path) -> list[tuple[float, str]]:
    done = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True)
    return [(float(m[2]) - float(m[1]), unescape(m[3])) for m in
            re.finditer(r'<word xMin="[\d.]+" yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">([^<]*)</word>',
                        done.stdout)
            for m in [(None, m.group(1), m.group(2), m.group(3))]]


def squeeze(text: str) -> str:
    """Without whitespace: a fact wrapped over two lines of the print is still whole."""
    return re.sub(r"\s+", "", text)


def decisive_facts(folder: Path) -> dict[str, str]:
    """What the print must hold whole, built from the signed evidence itself (not from the report)."""
    entries = read_evidence(folder)
    facts: dict[str, str] = {}
    for e in entries:
        value = e.get("value")
        if e.get("type") == "evidence" and e.get("name") == "key loaded by the app" and isinstance(value, dict):
            window = value.get("downtime window")
            if isinstance(window, dict):
                start = next(v for k, v in window.items() if k.startswith("from"))
                end = next(v for k, v in window.items() if k.startswith("to"))
                seconds = next(v for k, v in window.items() if k.startswith("seconds"))
                facts[f"downtime window line {e['seq']}"] = f"{stamp(str(start))} (stop command issued) to " \
                                                           f"{stamp(str(end))}"
                facts[f"downtime seconds line {e['seq']}"] = f"{seconds} s at most"
            facts[f"proof line {e['seq']}"] = (f"the value it read matches the value under the new key "
                                               f"{value['new key']}")
        if e.get("type") == "population":
            facts[f"population line {e['seq']}"] = f"{e['verified']:,} of {e['total']:,} {e['label']}"
    return facts


def missing(text: str, facts: dict[str, str]) -> list[str]:
    whole = squeeze(text)
    return [f"{name}: {fact}" for name, fact in facts.items() if squeeze(fact) not in whole]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory, pg: StagingServer) -> Path:
    suite = SuiteRunner(pg.admin_dsn, tmp_path_factory.mktemp("print"))
    run = suite.run("-m", "db_encryption_key", "--evidence-pdf=yes", rows=100, timeout_s=900)
    assert run.returncode == 0 and run.run_folder is not None, run.output[-3000:]
    return run.run_folder


def test_the_tool_prints_the_report_and_the_manifest_seals_the_print(rehearsal: Path) -> None:
    manifest = json.loads((rehearsal / "manifest.json").read_text())
    assert manifest["files"]["report.pdf"]["sha256"] == file_sha256(rehearsal / "report.pdf")
    files = re.search(r"<th>Files</th><td[^>]*>(.*?)</td>", (rehearsal / "index.html").read_text(), re.S)
    assert files is not None
    listed = re.findall(r"<code>([^<]+)</code>", files.group(1).split(":", 1)[0])
    assert "report.pdf" in listed and "manifest.json" not in listed  # the manifest does not list itself


def test_every_decisive_fact_is_whole_in_the_print(rehearsal: Path) -> None:
    facts = decisive_facts(rehearsal)
    assert any(k.startswith("downtime window") for k in facts) and any(k.startswith("proof") for k in facts)
    assert sum(k.startswith("population") for k in facts) >= 4, facts
    text = "\n".join(pages_text(rehearsal / "report.pdf"))
    assert missing(text, facts) == []


def test_a_cut_fact_is_found_missing(rehearsal: Path, tmp_path: Path) -> None:
    """The check above can fail: the same report with the downtime window cut the way the old print cut it."""
    facts = decisive_facts(rehearsal)
    window = next(v for k, v in facts.items() if k.startswith("downtime window"))
    page = (rehearsal / "index.html").read_text(encoding="utf-8")
    cut = page.replace(window, window[:12] + " … (291 more characters in evidence.jsonl line 93)")
    assert cut != page
    (tmp_path / "index.html").write_text(cut, encoding="utf-8")
    render_pdf(tmp_path / "index.html", tmp_path / "cut.pdf", Running("staging", "r", "r"))
    gone = missing("\n".join(pages_text(tmp_path / "cut.pdf")), facts)
    assert [m for m in gone if m.startswith("downtime window")], gone


def test_every_page_carries_the_target_the_run_and_its_number(rehearsal: Path) -> None:
    run_id = json.loads((rehearsal / "manifest.json").read_text())["run_id"]
    pages = pages_text(rehearsal / "report.pdf")
    for number, text in enumerate(pages, start=1):
        assert "REHEARSAL (STAGING)" in text, f"page {number}"
        assert run_id in text and rehearsal.name in text, f"page {number}"
        assert f"page {number} of {len(pages)}" in text, f"page {number}"


def test_the_auditors_summary_comes_first_in_plain_words(rehearsal: Path) -> None:
    pages = pages_text(rehearsal / "report.pdf")
    summary_pages = next(i for i, t in enumerate(pages) if re.search(r"^\s*Details\s*$", t, re.M))
    assert 1 <= summary_pages <= 4, f"the details begin on page {summary_pages + 1}"
    summary = squeeze("\n".join(pages[:summary_pages]))
    for heading in ("Auditor's summary", "Change record and people", "Rotations carried out", "Downtime window",
                    "Proof on the new credential", "Old credential", "Populations and their queries", "Exceptions",
                    "Controls"):
        assert squeeze(heading) in summary, heading
    assert [t for t in DEVELOPER_TERMS if squeeze(t) in summary] == []
    whole = squeeze("\n".join(pages))
    assert squeeze("Skipped / not ru") not in whole and squeeze("never ago") not in whole


def test_body_text_is_9_pt_or_more(rehearsal: Path) -> None:
    heights = word_heights(rehearsal / "report.pdf")
    small = [(round(h / BOX_PER_EM, 1), w) for h, w in heights if h / BOX_PER_EM < 8.95]  # font size in pt
    assert len(heights) > 1000 and small == [], small[:20]


def test_one_time_format_throughout(rehearsal: Path) -> None:
    text = unescape(re.sub(r"<[^>]+>", " ", (rehearsal / "index.html").read_text()))
    stamps = re.findall(r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d| UTC)?", text)
    odd = sorted({s for s in stamps if not re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", s)})
    assert stamps and odd == [], odd[:10]
    assert not re.search(r"\b1[7-9]\d{8}\.\d+\b", text), "a raw epoch time"
    assert "/tmp/" not in text  # noqa: S108


def test_no_heading_is_left_at_the_foot_of_a_page(rehearsal: Path) -> None:
    """Every heading of the report (h2, h3, a scenario's title) is followed on its page by what it heads."""
    page = (rehearsal / "index.html").read_text(encoding="utf-8")
    headings = {squeeze(unescape(re.sub(r"<[^>]+>", " ", h))).lower()
                for h in re.findall(r"<h[23][^>]*>(.*?)</h[23]>", page, re.S)}
    orphans, tails = [], []
    for number, text in enumerate(pages_text(rehearsal / "report.pdf"), start=1):
        body = [line for line in text.splitlines()  # the running header and footer are printed last
                if line.strip() and not line.startswith(("run id ", "REHEARSAL (STAGING): not a production change"))]
        tail = squeeze(" ".join(body[-2:])).lower()  # a heading may wrap over two lines
        tails.append(tail)
        orphans += [f"page {number}: {h}" for h in headings if h and tail.endswith(h)]
    assert len(headings) > 10 and orphans == [], orphans
    assert not any("rehearsal(staging)" in t for t in tails)  # the check reads the page's body, not its header
