"""Writes one run folder: reports/<UTC timestamp>-<target>/ with index.html, evidence.jsonl, junit.xml,
cucumber.json, oscal-assessment-results.json, the public key, manifest.json and manifest.sig; then points
reports/latest at it. The leak scan runs over everything before the manifest is signed."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree  # noqa: S405  (only our own pytest's junit.xml is parsed)

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rotation.evidence import html, oscal
from rotation.evidence.chain import write_chain
from rotation.evidence.controls import Catalog
from rotation.evidence.entries import build_entries
from rotation.evidence.leaks import Leak, redact_file, redact_text, scan_file, scan_tree
from rotation.evidence.metadata import RunMetadata
from rotation.evidence.pdf import PDF, PdfError, Running, find_chromium, render_pdf
from rotation.evidence.recorder import Recorder
from rotation.evidence.signing import PUBLIC_KEY, public_fingerprint, public_pem, write_signed_manifest
from rotation.evidence.summary import RunContext, Summary

INDEX, CHAIN, OSCAL, JUNIT, CUCUMBER = ("index.html", "evidence.jsonl", "oscal-assessment-results.json",
                                        "junit.xml", "cucumber.json")


def reports_folder(chosen: str | Path | None = None) -> Path:
    """Where run folders go: the one the operator named (--reports-dir), else reports/ in the current directory,
    where the command runs (never beside the code: an installed package's folder is not the operator's)."""
    return Path(chosen) if chosen else Path.cwd() / "reports"


@dataclass
class RunOutput:
    folder: Path
    verdict: str
    public_key_fingerprint: str
    leaks: list[Leak] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def new_run_folder(reports_dir: Path, meta: RunMetadata) -> Path:
    stamp = meta.started.strftime("%Y%m%dT%H%M%SZ")
    reports_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 100):  # two runs in one second must not share a folder
        folder = reports_dir / (f"{stamp}-{meta.target}" if n == 1 else f"{stamp}-{meta.target}-{n}")
        try:
            folder.mkdir(mode=0o700)  # private from the start; restrict() makes sure at the end
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name under {reports_dir} for {stamp}")


def restrict(folder: Path) -> None:
    """The run folder 0700 and every file in it 0600: evidence names people, hosts and fingerprints."""
    os.chmod(folder, 0o700)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o600)
        elif path.is_dir():
            os.chmod(path, 0o700)


def point_latest(folder: Path) -> None:
    """reports/latest -> the newest run, replaced atomically so a reader never sees it missing."""
    link = folder.parent / "latest"
    tmp = folder.parent / f".latest-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(folder.name, target_is_directory=True)
    os.replace(tmp, link)


def junit_properties(meta: RunMetadata, summary: Summary) -> list[tuple[str, str]]:
    """The verdict as JUnit properties, so CI dashboards read what the report says (INCOMPLETE names each scenario
    that did not run, with its reason)."""
    props = [("rotation.verdict", summary.verdict), ("rotation.target", meta.target),
             ("rotation.signing-key-fingerprint", meta.public_key_fingerprint)]
    props += [("rotation.verdict-reason", reason) for reason in summary.verdict_reasons()]
    props += [(f"rotation.{s.status.replace(' ', '-')}", f"{s.name}: {s.reason or 'no reason recorded'}")
              for s in summary.incomplete]
    return props


def _mark_junit(path: Path, props: list[tuple[str, str]]) -> None:
    """Add the properties to every testsuite of the run folder's junit.xml (replacing ours from an earlier pass)."""
    if not path.is_file():
        return
    tree = ElementTree.parse(path)  # noqa: S314  (the file our own pytest wrote)
    root = tree.getroot()
    for suite in [root] if root.tag == "testsuite" else root.iter("testsuite"):
        holder = suite.find("properties")
        if holder is None:
            holder = ElementTree.Element("properties")
            suite.insert(0, holder)
        for old in [p for p in holder if str(p.get("name", "")).startswith("rotation.")]:
            holder.remove(old)
        for name, value in props:
            ElementTree.SubElement(holder, "property", name=name, value=value)
    tree.write(path, encoding="utf-8", xml_declaration=True)


TARGET_TAG = "@target:"


def _mark_cucumber(path: Path, target: str) -> None:
    """Every feature and scenario of the folder's cucumber.json tagged with the target (`@target:staging`): a
    dashboard reading it alone cannot take a rehearsal for a production change."""
    if not path.is_file():
        return
    try:
        features = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return
    if not isinstance(features, list):
        return
    for node in [f for f in features if isinstance(f, dict)] + [e for f in features if isinstance(f, dict)
                                                                 for e in f.get("elements", []) if isinstance(e, dict)]:
        tags = [t for t in node.get("tags", []) if not str(t.get("name", "")).startswith(TARGET_TAG)]
        node["tags"] = [*tags, {"name": f"{TARGET_TAG}{target}", "line": node.get("line", 1)}]
    path.write_text(json.dumps(features, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")


def _render_all(folder: Path, meta: RunMetadata, summary: Summary, recorder: Recorder, pem: str,
                also: tuple[str, ...] = ()) -> tuple[str, int]:
    _mark_junit(folder / JUNIT, junit_properties(meta, summary))
    _mark_cucumber(folder / CUCUMBER, meta.target)
    entries, seq_of = build_entries(meta, summary, recorder.run_items)
    head, lines = write_chain(folder / CHAIN, entries)
    document = oscal.assessment_results(meta, summary, seq_of)
    (folder / OSCAL).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    files = {p.name for p in folder.iterdir() if p.is_file()} | {INDEX, "manifest.json", "manifest.sig", *also}
    page = html.render(meta, summary, run_name=folder.name, seq_of=seq_of, public_key_pem=pem,
                       run_items=recorder.run_items, files=files, secret_count=len(recorder.secrets))
    (folder / INDEX).write_text(page, encoding="utf-8")
    return head, lines


def _print(folder: Path, meta: RunMetadata, summary: Summary) -> bool:
    """report.pdf, the auditor's print, made from the final index.html before the manifest seals both. When it
    cannot be made, the run says so (a problem: FAILED, with the reason) and leaves no partial file."""
    try:
        render_pdf(folder / INDEX, folder / PDF, Running(meta.target, meta.run_id, folder.name))
        return True
    except (PdfError, OSError) as exc:
        (folder / PDF).unlink(missing_ok=True)
        summary.problems.append(f"the report could not be printed to {PDF}: {exc}")
        return False


def _scan(folder: Path, secrets: tuple[str, ...], extra_scan: list[Path]) -> list[Leak]:
    leaks = scan_tree(folder, secrets)
    for path in extra_scan:
        if path.is_file():
            leaks += scan_file(path, secrets, label=str(path))
    return leaks


def write_run(reports_dir: Path, meta: RunMetadata, recorder: Recorder, catalog: Catalog, *,
              signing_key: Ed25519PrivateKey | None, copies: dict[str, Path | None],
              extra_scan: list[Path] | None = None, pdf: str = "no") -> RunOutput:
    """`copies` maps a name in the folder (junit.xml, cucumber.json) to the file pytest wrote, if any. `pdf`: "yes"
    prints the report to report.pdf (sealed by the manifest), "auto" when Chromium is found, "no" never."""
    folder = new_run_folder(reports_dir, meta)
    key = signing_key or Ed25519PrivateKey.generate()  # a per-run key lives only in memory and dies here
    pem = public_pem(key.public_key())
    meta.public_key_fingerprint = public_fingerprint(key.public_key())
    meta.signing_key = meta.signing_key or ("configured" if signing_key else "per-run (generated for this run)")
    (folder / PUBLIC_KEY).write_text(pem, encoding="utf-8")
    for name, source in copies.items():
        if source is not None and source.is_file():
            shutil.copyfile(source, folder / name)
    for name, text in recorder.attachments.items():
        (folder / name).write_text(text, encoding="utf-8")

    summary = Summary.of(recorder, catalog, RunContext(meta.target, meta.approver, meta.change_id))
    printing = pdf == "yes" or (pdf == "auto" and find_chromium() is not None)
    also = (PDF,) if printing else ()
    head, lines = _render_all(folder, meta, summary, recorder, pem, also)
    leaks = _scan(folder, recorder.secrets, extra_scan or [])
    if leaks:
        # Overwrite the leaked secret in our folder, then re-render so the report itself states the failure.
        summary.leaks = leaks
        recorder.rewrite_text(lambda text: redact_text(text, recorder.secrets))
        for leak in leaks:
            if (folder / leak.file).is_file():
                redact_file(folder / leak.file, recorder.secrets)
        for path in extra_scan or []:  # the operator's own JUnit / cucumber / log files: no secret stays there either
            if any(leak.file == str(path) for leak in leaks):
                redact_file(path, recorder.secrets)
        head, lines = _render_all(folder, meta, summary, recorder, pem, also)
        if scan_tree(folder, recorder.secrets):  # cannot happen unless redaction is broken: say so, loudly
            summary.problems.append("a registered secret is still present after redaction")
    if printing and not _print(folder, meta, summary):
        head, lines = _render_all(folder, meta, summary, recorder, pem)  # the verdict now says why there is no print
    write_signed_manifest(folder, key, {
        "run_id": meta.run_id, "run": folder.name, "target": meta.target, "verdict": summary.verdict,
        "evidence_chain_head": head, "evidence_lines": lines, "public_key_fingerprint": meta.public_key_fingerprint,
    })
    restrict(folder)
    point_latest(folder)
    return RunOutput(folder, summary.verdict, meta.public_key_fingerprint, leaks, summary.verdict_reasons())

