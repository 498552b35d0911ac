"""No provider credential in pytest output, logs or files: run the three provider scenarios as an operator would
(a real pytest subprocess, DEBUG logging, every captured log shown), then look for every credential the worlds
held (old and new) in the output and in every file the run wrote, except .env and its backups."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from rotation import envfile
from tests.harness import SuiteRunner

MEANT_TO_HOLD_SECRETS = (".env", ".env.backup.", ".rotation-pending.", "smtp-key.pem")
CREDENTIALS = ("TWILIO_AUTH_TOKEN", "WHATSAPP_ACCESS_TOKEN", "WHATSAPP_APP_SECRET", "SMTP_PASSWORD",
               "DB_ENCRYPTION_KEY")


def encodings(secret: str) -> list[str]:
    raw = secret.encode()
    return [secret, base64.b64encode(raw).decode(), raw.hex(), urllib.parse.quote(secret, safe="")]


def files_written(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.name.startswith(MEANT_TO_HOLD_SECRETS):
            yield path


def credentials(basetemp: Path) -> set[str]:
    found: set[str] = set()
    for env_file in basetemp.rglob(".env*"):
        if env_file.name == ".env" or env_file.name.startswith(".env.backup."):
            values = envfile.read_env(env_file)
            found |= {values[name] for name in CREDENTIALS if values.get(name)}
    return found


def test_provider_rotations_leave_no_credential_in_output_logs_or_files(suite: SuiteRunner, tmp_path: Path) -> None:
    basetemp = tmp_path / "basetemp"
    run = suite.run("steps/test_rotation.py", "-k", "twilio or whatsapp or smtp", "--basetemp", str(basetemp),
                    "-s", "-v", "-rA", "--log-level=DEBUG", rows=20)
    assert [o.status for o in run.outcomes.values()] == ["passed"] * 3, run.output[-3000:]
    secrets = credentials(basetemp)
    assert len(secrets) >= 3 * 5 + 3, f"only {len(secrets)} credentials found: the test would prove little"
    places = {"pytest output": run.output} | {str(p): p.read_text(errors="replace") for p in files_written(tmp_path)}
    assert any(name.endswith("app.log") for name in places), "the app stand-in's log was not found"
    for name, text in places.items():
        for secret in secrets:
            for form in encodings(secret):
                assert form not in text, f"a credential appears in {name}"
