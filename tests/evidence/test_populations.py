"""Population figures an auditor can re-run: after `rotation db-key rotate`, each population query the run folder
shows, run in psql against the rotated database with the keys as psql variables, returns the reported figure; the
report reconciles rows x columns = non-NULL + NULL and shows what each key opens."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from staging.postgres import StagingServer
from tests.harness import read_evidence
from tests.rotation.live_crm import LiveCrm, live_crm

PSQL = shutil.which("psql")


@pytest.fixture
def rotated(pg: StagingServer, tmp_path: Path) -> Iterator[LiveCrm]:
    with live_crm(pg.admin_dsn, tmp_path, 30) as world:
        done = world.rotate()
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        yield world


def psql(dsn: str, text: str, variables: dict[str, str]) -> dict[str, int]:
    """The query as an auditor runs it: psql, variables set with -v, the statement on stdin, one row back."""
    assert PSQL is not None
    args = [PSQL, dsn, "-X", "-q", "-A", "-F", "|", "-P", "footer=off", "-v", "ON_ERROR_STOP=1"]
    args += [a for name, value in variables.items() for a in ("-v", f"{name}={value}")]
    done = subprocess.run(args, input=text, capture_output=True, text=True, timeout=60, check=True)
    header, row = done.stdout.strip().splitlines()[-2:]
    return {name: int(value) for name, value in zip(header.split("|"), row.split("|"), strict=True)}


@pytest.mark.skipif(PSQL is None, reason="psql is not installed (.ci/run installs PostgreSQL)")
def test_every_reported_population_query_returns_its_figure_in_psql(rotated: LiveCrm) -> None:
    [run] = rotated.folders()
    populations = [e for e in read_evidence(run.path) if e["type"] == "population"]
    keys = {"new_key": rotated.key_in_env().reveal(), "old_key": rotated.old_key.reveal()}
    assert {p["label"] for p in populations} >= {"values in crm_client_preferences verified under the new key",
                                                  "values in crm_client_preferences the old key no longer opens"}
    # psql cannot count these: the sweep spans every table of the app's schemas and tries Fernet tokens too, and
    # Fernet values need the app's key derivation (rotation.db_key.populations.FERNET_NOTE); per inventory table
    # the pgcrypto figures above re-run in psql
    # and the staged rotation's figures read its side table, which is dropped once the rotation finishes
    not_in_psql = {"encrypted-looking values the old key no longer opens",
                   "values in security_api_credentials verified under the new key",
                   "rows of crm_client_preferences staged and verified under the new key",
                   "rows of crm_client_preferences holding their verified staged ciphertext"}
    without = {p["label"] for p in populations if p["query"] is None}
    assert "encrypted-looking values the old key no longer opens" in without and without <= not_in_psql
    for population in (p for p in populations if p["label"] not in not_in_psql):
        query = population["query"]
        assert isinstance(query, dict), f"{population['label']}: no psql query"
        for name in query["variables"]:
            assert f":'{name}'" in query["sql"]  # a psql variable, never an inlined key
        assert keys["new_key"] not in query["sql"] and keys["old_key"] not in query["sql"]
        got = psql(rotated.dsn, query["sql"], {n: keys[n] for n in query["variables"]})
        assert got == {"verified": population["verified"], "total": population["total"]}, population["label"]

    page = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", (run.path / "index.html").read_text())).split())
    census = populations[0]["query"]["census"]  # type: ignore[index]
    assert (f"{census['rows']:,} rows × 3 columns = {census['rows'] * 3:,} = {census['non_null']:,} non-NULL + "
            f"{census['nulls']:,} NULL") in page
    total = populations[0]["total"]
    assert f"opens with the new key: {total:,} of {total:,} · opens with the old key: 0" in page
