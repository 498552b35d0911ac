"""`rotation audit-trail` over a seeded year: a clean year flags nothing; a 120-day gap, a rotation without evidence
and a tampered run folder are each flagged. Rows the app's trigger logs under an alias count for their credential."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rotation.cli import main as rotation_main
from rotation.core.config import default_config
from rotation.core.rotation_log import log_rotation
from rotation.evidence.controls import load_catalog
from rotation.evidence.metadata import RunMetadata
from rotation.evidence.recorder import Recorder, ScenarioRecord
from rotation.evidence.report import write_run
from rotation.evidence.signing import public_fingerprint
from staging.postgres import StagingServer
from tests.harness import seeded_crm

CONFIG = default_config()
YEAR_START = dt.datetime(2025, 1, 5, 9, 0, tzinfo=dt.UTC)


def schedule(gap_for: str | None) -> dict[str, list[dt.datetime]]:
    """Every credential rotated every 80 days through 2025; one credential skips a rotation (a 120-day gap)."""
    days = {c.type: [0, 80, 160, 240, 320] for c in CONFIG.credentials}
    if gap_for:
        days[gap_for] = [0, 80, 200, 280]
    return {t: [YEAR_START + dt.timedelta(days=d) for d in ds] for t, ds in days.items()}


def archive_run(reports: Path, key: Ed25519PrivateKey, row: dict[str, str], at: dt.datetime) -> Path:
    """A live run folder whose evidence names the rotation log row, signed with the evidence key."""
    recorder = Recorder()
    recorder.begin_scenario(ScenarioRecord("steps/x.py::test_rotation", "Scheduled rotation", "Rotation",
                                           "rotation/x.feature", 3, ["rotation", "SOC2-CC8.1"]))
    recorder.record("rotation logged", row, source="INSERT INTO security_credential_rotations ...")
    recorder.scenarios[-1].status = "passed"
    recorder.end_scenario()
    meta = RunMetadata(run_id=str(uuid.uuid4()), target="live", operator="alice", approver="bob",
                       change_id=f"CHG-{at:%m%d}", started=at, finished=at)
    return write_run(reports, meta, recorder, load_catalog(), signing_key=key, copies={}).folder


def seed(dsn: str, reports: Path, key: Ed25519PrivateKey, *, gap_for: str | None = None,
         without_evidence: int | None = None) -> list[Path]:
    folders = []
    n = 0
    with psycopg.connect(dsn) as conn:
        for credential in CONFIG.credentials:
            for at in schedule(gap_for)[credential.type]:
                record = log_rotation(conn, credential, rotated_by="alice", previous=f"old-{n}", reason="Scheduled",
                                      at=at)
                if credential.log_aliases and n % 5 == 1:  # the app's own trigger logs some under its alias
                    conn.execute("UPDATE security_credential_rotations SET credential_type = %s WHERE "
                                 "rotation_id::text = %s", (credential.log_aliases[0], record.rotation_id))
                    conn.commit()
                if n != without_evidence:
                    folders.append(archive_run(reports, key, record.as_evidence(), at))
                n += 1
    return folders


def audit_trail(dsn: str, reports: Path, key: Ed25519PrivateKey, out: Path) -> tuple[int, dict[str, object]]:
    code = rotation_main(["audit-trail", "--from", "2025-01-01", "--to", "2025-12-31", "--dsn", dsn,
                          "--evidence-dir", str(reports), "--fingerprint", public_fingerprint(key.public_key()),
                          "--out", str(out)])
    assert (out / "audit-trail.html").read_text().startswith("<!DOCTYPE html>")
    return code, json.loads((out / "audit-trail.json").read_text())


def test_a_clean_year_flags_nothing(pg: StagingServer, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    with seeded_crm(pg.admin_dsn, 1) as (dsn, _):
        seed(dsn, tmp_path / "archive", key)
        code, trail = audit_trail(dsn, tmp_path / "archive", key, tmp_path / "out")
    assert (code, trail["findings"]) == (0, [])
    rotations = trail["rotations"]
    assert len(rotations) == 5 * len(CONFIG.credentials) and all(r["evidence"] for r in rotations)  # type: ignore[index,union-attr]
    assert {r["credential"] for r in rotations} == set(CONFIG.types)  # type: ignore[union-attr]


def test_a_gap_a_rotation_without_evidence_and_a_tampered_folder_are_flagged(pg: StagingServer,
                                                                               tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    gap_for = CONFIG.credentials[-1].type
    with seeded_crm(pg.admin_dsn, 1) as (dsn, _):
        folders = seed(dsn, tmp_path / "archive", key, gap_for=gap_for, without_evidence=2)
        page = folders[0] / "index.html"
        page.write_text(page.read_text().replace("alice", "alicf"))
        code, trail = audit_trail(dsn, tmp_path / "archive", key, tmp_path / "out")
    findings: list[str] = trail["findings"]  # type: ignore[assignment]
    assert code == 1
    assert [f for f in findings if f.startswith("gap:")] == [
        f"gap: {gap_for} went 120.0 days without rotation (rotation 2025-03-26 to rotation 2025-07-24); its policy "
        f"allows {CONFIG.credential(gap_for).interval.days}"]
    assert len([f for f in findings if f.startswith("rotation without evidence:")]) == 1
    tampered = [f for f in findings if f.startswith("evidence does not verify:")]
    assert len(tampered) == 1 and str(folders[0]) in tampered[0] and "index.html" in tampered[0]
    assert len(findings) == 3, findings


@pytest.fixture(autouse=True)
def _no_archive_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROTATION_EVIDENCE_ARCHIVE", raising=False)


def test_the_audit_trail_is_signed_like_a_run_folder_and_a_changed_byte_fails_it(pg: StagingServer,
                                                                                   tmp_path: Path) -> None:
    """The output carries signing-key.pub.pem, manifest.json and manifest.sig: `rotation verify-evidence` against the
    pinned signer passes it, and fails it once its HTML is changed. An audit trail is not taken for a run folder."""
    key = Ed25519PrivateKey.generate()
    signer = tmp_path / "signer.pem"
    signer.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    pin = public_fingerprint(key.public_key())
    out = tmp_path / "archive" / "audit-2025"  # inside the archive: the next audit must not read it as a run folder
    with seeded_crm(pg.admin_dsn, 1) as (dsn, _):
        seed(dsn, tmp_path / "archive", key)
        args = ["audit-trail", "--from", "2025-01-01", "--to", "2025-12-31", "--dsn", dsn, "--evidence-dir",
                str(tmp_path / "archive"), "--fingerprint", pin, "--out", str(out), "--signing-key", str(signer)]
        assert rotation_main(args) == 0
        assert rotation_main(args) == 0  # again, with the first output inside the archive
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "rotation-runbook audit-trail manifest v1"
    assert set(manifest["files"]) == {"audit-trail.html", "audit-trail.json", "signing-key.pub.pem"}
    assert rotation_main(["verify-evidence", str(out), "--fingerprint", pin]) == 0
    standalone = [sys.executable, str(Path(__file__).resolve().parents[2] / "docs" / "verify_run_folder.py"), str(out),
                  "--fingerprint", pin]
    assert subprocess.run(standalone, capture_output=True, check=False).returncode == 0
    page = out / "audit-trail.html"
    page.write_text(page.read_text().replace("Findings", "Findingz"))
    assert rotation_main(["verify-evidence", str(out), "--fingerprint", pin]) == 1
    assert subprocess.run(standalone, capture_output=True, check=False).returncode == 1
