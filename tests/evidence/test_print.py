"""The printed report of a DB-key rehearsal (`-m db_encryption_key` in staging: 7 scenarios) fits in 12 A4 pages in
Chromium's print-to-PDF, with each feature's text once, no temporary path and every time in ISO 8601 UTC."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from html import unescape
from pathlib import Path

import pytest

from tests.harness import SuiteRunner

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MAX_PAGES = 12


def print_to_pdf(page: Path, pdf: Path) -> int:
    """Chromium's own print of the page on A4 (the report's @page), returning the PDF's page count."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                        page.as_uri()], capture_output=True, timeout=120, check=True)
    data = pdf.read_bytes()
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_a_db_key_rehearsal_prints_in_at_most_12_pages(suite: SuiteRunner, tmp_path: Path) -> None:
    run = suite.run("-m", "db_encryption_key", rows=100, timeout_s=600)
    assert run.returncode == 0 and run.run_folder is not None, run.output[-3000:]
    page = run.run_folder / "index.html"
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", page.read_text())).split())
    assert len(run.outcomes) == 7

    pages = print_to_pdf(page, tmp_path / "report.pdf")
    assert 0 < pages <= MAX_PAGES, f"{pages} A4 pages"
    assert text.count("Feature: Database Encryption Key Rotation") == 1  # the feature's text once
    assert text.count("CRITICAL: this is the most sensitive rotation") == 1
    assert "/tmp/" not in text and str(tmp_path) not in text and tempfile.gettempdir() + "/" not in text  # noqa: S108
    stamps = re.findall(r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?", text)
    assert stamps and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", s) for s in stamps), \
        sorted({s for s in stamps if not s.endswith("Z")})[:5]
    assert not re.search(r"\b1[7-9]\d{8}\.\d+\b", text), "a raw epoch time"
