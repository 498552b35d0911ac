"""evidence.jsonl: one JSON object per line, each carrying the SHA-256 of the line before it (a hash chain), so a
changed, removed or reordered line breaks every link after it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

GENESIS = "0" * 64


def line_hash(line: str) -> str:
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


def chain_lines(entries: Iterable[dict[str, object]]) -> tuple[list[str], str]:
    """Serialise entries as chained lines; returns the lines and the hash of the last one (the head)."""
    lines, prev = [], GENESIS
    for seq, entry in enumerate(entries):
        line = json.dumps({"seq": seq, "prev": prev, **entry}, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":"))
        lines.append(line)
        prev = line_hash(line)
    return lines, prev


def write_chain(path: Path, entries: Iterable[dict[str, object]]) -> str:
    lines, head = chain_lines(entries)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return head


def verify_chain(path: Path) -> tuple[str | None, list[str]]:
    """(head hash, problems). Each problem names the line number an auditor can look at."""
    problems: list[str] = []
    prev = GENESIS
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path.name}: cannot be read as UTF-8 ({type(exc).__name__})"]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"{path.name} line {number}: not valid JSON")
            prev = line_hash(line)
            continue
        if entry.get("prev") != prev:
            problems.append(f"{path.name} line {number}: previous-line hash does not match (chain broken)")
        if entry.get("seq") != number - 1:
            problems.append(f"{path.name} line {number}: sequence number {entry.get('seq')} where {number - 1} "
                            "was expected")
        prev = line_hash(line)
    if not lines:
        problems.append(f"{path.name}: empty")
    return (prev if lines else None), problems
