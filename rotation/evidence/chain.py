"""evidence.jsonl: one JSON object per line, each carrying the SHA-256 of the line before it (a hash chain), so a
changed, removed or reordered line breaks the link after it.

Exactly what is hashed (docs/evidence.md repeats it for auditors): each line is the UTF-8 bytes of a JSON object
serialised with sorted keys, no spaces (`separators=(",", ":")`) and non-ASCII characters as themselves; lines end
with one `\\n`, which is not part of the hashed bytes. `prev` of line 1 is 64 zeros (GENESIS); `prev` of line n is the
lowercase hex SHA-256 of line n-1's bytes. `seq` is the line's own number, from 1. The chain head is the hex SHA-256
of the last line; manifest.json records it, and the signature covers manifest.json."""

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
    for seq, entry in enumerate(entries, start=1):
        line = json.dumps({"seq": seq, "prev": prev, **entry}, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":"))
        lines.append(line)
        prev = line_hash(line)
    return lines, prev


def write_chain(path: Path, entries: Iterable[dict[str, object]]) -> tuple[str, int]:
    """Write the chain; returns its head and its number of lines."""
    lines, head = chain_lines(entries)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return head, len(lines)


def _seq(entry: object) -> int | None:
    value = entry.get("seq") if isinstance(entry, dict) else None
    return value if isinstance(value, int) else None


def verify_chain(path: Path) -> tuple[str | None, list[str]]:
    """(head hash, problems). Each problem names the 1-based line number an auditor can look at. A removed, inserted
    or changed line is one problem, named where the chain breaks: the lines after it still link to each other."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path.name}: cannot be read as UTF-8 ({type(exc).__name__})"]
    if text and not text.endswith("\n"):
        problems = [f"{path.name}: the last line does not end with a newline (the file was cut or appended to)"]
    else:
        problems = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return None, [f"{path.name}: empty"]
    prev_hash, prev_seq = GENESIS, 0
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"{path.name} line {number}: not valid JSON")
            prev_hash, prev_seq = line_hash(line), prev_seq + 1
            continue
        seq = _seq(entry)
        linked = isinstance(entry, dict) and entry.get("prev") == prev_hash
        if seq is not None and seq > prev_seq + 1:
            missing = seq - prev_seq - 1
            where = f"before line {number}" if number > 1 else "at the start"
            problems.append(f"{path.name} line {number}: {missing} line{'s' if missing > 1 else ''} missing {where} "
                            f"(seq {prev_seq} is followed by seq {seq})")
        elif seq is not None and seq <= prev_seq:
            problems.append(f"{path.name} line {number}: seq {seq} after seq {prev_seq} (a line was inserted, "
                            "duplicated or moved)")
        elif not linked:
            what = f"line {number - 1} was changed" if number > 1 else "the chain does not start from GENESIS"
            problems.append(f"{path.name} line {number}: previous-line hash does not match ({what})")
        elif seq is None:
            problems.append(f"{path.name} line {number}: no sequence number")
        prev_hash, prev_seq = line_hash(line), seq if seq is not None else prev_seq + 1
    return prev_hash, problems
