"""The Recorder on its own (importable outside pytest) and a run cut short by Ctrl-C."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rotation.core.secret import fingerprint
from rotation.evidence import Recorder
from tests.evidence.project import INTERRUPTED, run, run_folder

PROJECT = Path(__file__).resolve().parents[2]


def test_the_recorder_works_outside_pytest(secret: str) -> None:
    recorder = Recorder()
    recorder.register_secret(secret)
    recorder.record("login", {"token": secret, "user": "svc"}, source=f"POST /token?t={secret}")
    recorder.population("values verified", 2, 3)
    item = recorder.run_items[0]
    assert item.redacted and secret not in json.dumps(item.value) and secret not in (item.source or "")
    assert f"[secret {fingerprint(secret)}]" in (item.source or "")
    assert recorder.populations[0].sentence() == "2 of 3 values verified" and not recorder.populations[0].complete
    assert item.collected.tzinfo is not None and item.collected.utcoffset().total_seconds() == 0


def test_passwords_in_urls_never_reach_the_evidence() -> None:
    recorder = Recorder()
    recorder.record("connect", {"dsn": "postgresql://app:s3cr3t-pw@db.internal:5432/crm"},
                    source="psql postgres://admin:hunter2@localhost/eventdb -c 'SELECT 1'")
    item = recorder.run_items[0]
    assert item.value == {"dsn": "postgresql://app:***@db.internal:5432/crm"}
    assert item.source == "psql postgres://admin:***@localhost/eventdb -c 'SELECT 1'" and item.redacted


def test_a_dsn_password_on_the_command_line_is_not_in_the_report(pytester: pytest.Pytester,
                                                                 project: Callable[..., Path]) -> None:
    root = project()  # --dsn is one of the suite's options
    run(pytester, "--dsn", "postgresql://app:pw-on-cli-123@db/crm").assert_outcomes(passed=3)
    folder = run_folder(root)
    for path in folder.iterdir():
        assert b"pw-on-cli-123" not in path.read_bytes(), path.name
    assert "postgresql://app:***@db/crm" in (folder / "index.html").read_text()


@pytest.mark.parametrize("name", ["index.html", "manifest.json", "../escape.md", ".hidden", ""])
def test_an_attachment_cannot_replace_or_escape_the_folder(name: str) -> None:
    with pytest.raises(ValueError, match="attachment name"):
        Recorder().attach(name, "text")


def test_values_that_are_not_json_are_kept_as_text() -> None:
    recorder = Recorder()
    recorder.record("odd", {"path": Path("/srv/app/.env"), "ids": {3}, "raw": b"\x00\x01"})
    assert recorder.run_items[0].value == {"path": "/srv/app/.env", "ids": [3], "raw": "<2 bytes>"}


def test_an_interrupted_run_still_leaves_evidence_saying_so(pytester: pytest.Pytester, project: Callable[..., Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(**{"interrupted.feature": INTERRUPTED})
    # A subprocess: in-process, pytester hands the KeyboardInterrupt on to the session running this test.
    monkeypatch.setenv("PYTHONPATH", str(PROJECT))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark",
                                           timeout=120)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    folder = run_folder(root)
    page = (folder / "index.html").read_text()
    assert "Verdict: FAILED" in page
    assert "before this scenario finished during step &#39;When the operator presses Ctrl-C&#39;" in page
    steps = [json.loads(line) for line in (folder / "evidence.jsonl").read_text().splitlines()]
    statuses = [e["status"] for e in steps if e["type"] == "step"]
    assert statuses == ["passed", "interrupted", "not run"]
