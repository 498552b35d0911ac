"""The secret-leak self-scan: a registered secret planted in an artifact, in any common encoding, fails the run;
the message names the file and never the secret; the folder left behind holds no trace of it."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from rotation.cli import main as rotation_main
from rotation.evidence.leaks import forms_of, scan_file
from tests.evidence.project import leak_feature, run, run_folder


@pytest.mark.parametrize("form", ["base64", "hex", "URL-encoded"])
def test_a_planted_secret_fails_the_run_without_showing_it(pytester: pytest.Pytester, project: Callable[..., Path],
                                                           secret: str, form: str) -> None:
    root = project(**{"leak.feature": leak_feature(f"the step records the key {form}")})
    result = run(pytester)
    result.assert_outcomes(passed=1)  # the scenario itself passed: only the scan fails the run
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = "\n".join(result.outlines + result.errlines)
    assert f"SECRET LEAK: evidence.jsonl contains a registered secret ({form} form" in output
    for pattern in forms_of(secret):
        assert pattern.decode() not in output
    folder = run_folder(root)
    assert "Verdict: FAILED" in (folder / "index.html").read_text()
    for path in folder.iterdir():
        assert scan_file(path, [secret]) == [], f"{path.name} still holds the secret"
    assert rotation_main(["verify-evidence", str(folder)]) == 3  # redacted before signing: intact (signer unpinned)


def test_a_raw_secret_in_the_log_file_fails_the_run(pytester: pytest.Pytester, project: Callable[..., Path],
                                                    secret: str) -> None:
    project(**{"leak.feature": leak_feature("the step logs the key")})
    result = run(pytester, "--log-file", "run.log", "--log-file-level", "WARNING")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = "\n".join(result.outlines + result.errlines)
    assert "run.log contains a registered secret (raw form" in output
    assert secret not in output


def test_a_registered_artifact_is_scanned_too(pytester: pytest.Pytester, project: Callable[..., Path],
                                              secret: str) -> None:
    project(**{"leak.feature": leak_feature("the step writes the key to a state file it registers")})
    result = run(pytester)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = "\n".join(result.outlines + result.errlines)
    assert "SECRET LEAK: state.json contains a registered secret (raw form" in output and secret not in output


def test_a_raw_secret_recorded_by_a_step_is_replaced_by_its_fingerprint(
        pytester: pytest.Pytester, project: Callable[..., Path], secret: str) -> None:
    root = project(**{"leak.feature": leak_feature("the step records the key raw")})
    result = run(pytester)
    assert result.ret == pytest.ExitCode.OK  # redacted at record time, so nothing leaks
    folder = run_folder(root)
    page = (folder / "index.html").read_text()
    assert "secret redacted" in page and secret not in page


def test_a_clean_run_passes_the_scan(pytester: pytest.Pytester, project: Callable[..., Path]) -> None:
    root = project()
    result = run(pytester)
    assert result.ret == pytest.ExitCode.OK
    assert "1 registered secret(s) looked for" in (run_folder(root) / "index.html").read_text()


@pytest.mark.parametrize("prefix", [b"", b"a", b"ab", b"abc", b"abcd"])
def test_the_scan_finds_base64_at_every_alignment(tmp_path: Path, secret: str, prefix: bytes) -> None:
    blob = base64.b64encode(prefix + secret.encode() + b"tail")
    (tmp_path / "f").write_bytes(b"x=" + blob + b"\n")
    assert [leak.form for leak in scan_file(tmp_path / "f", [secret])] == ["base64"]


def test_the_scan_finds_hex_and_url_forms(tmp_path: Path, secret: str) -> None:
    for text, form in ((secret.encode().hex().upper(), "hex"), (quote(secret + "/+", safe=""), "URL-encoded")):
        (tmp_path / "f").write_text(text)
        assert [leak.form for leak in scan_file(tmp_path / "f", [secret])] == [form]
    (tmp_path / "f").write_text("nothing here")
    assert scan_file(tmp_path / "f", [secret]) == []
