"""No provider credential in pytest output, logs or files: run the three provider scenarios as an operator would
(a real pytest subprocess, DEBUG logging, every captured log shown), then look for every credential the worlds
held (old and new) in the output and in every file the run wrote, except .env and its backups."""

from __future__ import annotations

from pathlib import Path

from tests.harness import SuiteRunner
from tests.leakcheck import assert_no_secret, credentials_in, places_under


def test_provider_rotations_leave_no_credential_in_output_logs_or_files(suite: SuiteRunner, tmp_path: Path) -> None:
    basetemp = tmp_path / "basetemp"
    run = suite.run("rotation_suite/steps/test_rotation.py", "-m", "scheduled", "-k", "twilio or whatsapp or smtp",
                    "--basetemp", str(basetemp),
                    "-s", "-v", "-rA", "--log-level=DEBUG", rows=20)
    assert [o.status for o in run.outcomes.values()] == ["passed"] * 3, run.output[-3000:]
    secrets = credentials_in(basetemp)
    assert len(secrets) >= 3 * 5 + 3, f"only {len(secrets)} credentials found: the test would prove little"
    places = {"pytest output": run.output.encode()} | places_under(tmp_path)
    assert any(name.endswith("app.log") for name in places), "the app stand-in's log was not found"
    assert_no_secret(places, secrets)
