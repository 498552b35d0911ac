"""Staging troubles for .env: a rotation that leaves a credential's line unparsable, as a hand edit (or `sed` with a
quoting slip) does. Only staging breaks .env on purpose."""

from __future__ import annotations

import io
import os
from pathlib import Path

from dotenv.parser import parse_stream

from rotation.core.config import Credential
from rotation.core.keys import generate_key
from rotation.core.proof import Evidence


def leave_unparsable(env_file: Path, credential: Credential, evidence: Evidence) -> int:
    """Rewrite the credential's line with a new value and an unterminated double quote; returns its line number.
    python-dotenv then drops the line (with a warning), so the app starts without the credential."""
    new_value = generate_key()
    evidence.register_secret(new_value)
    bindings = list(parse_stream(io.StringIO(env_file.read_text())))
    index = max(i for i, b in enumerate(bindings) if b.key == credential.env)
    line = bindings[index].original.line
    parts = [b.original.string for b in bindings]
    parts[index] = f'{credential.env}="{new_value.reveal()}\n'
    fd = os.open(env_file, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as f:
        f.write("".join(parts))
    evidence.record(".env broken", {"variable": credential.env, "line": line, "new value": new_value.fingerprint},
                    source="staging: the line rewritten with an unterminated double quote")
    return line
