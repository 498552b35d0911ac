"""Population figures an auditor re-performs: after `rotation db-key rotate`, each population query the run folder
shows runs in psql (standard PostgreSQL and pgcrypto, the keys loaded from files with \\copy) against the rotated
database and returns the reported figure; with a wrong key each one visibly fails; a figure without a query is not
shown as complete; the report reconciles rows x columns = non-NULL + NULL and shows what each key opens."""

from __future__ import annotations

import datetime as dt
import html
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from rotation.core.database import connect
from rotation.core.keys import generate_key
from rotation.emergency import populations as emergency_populations
from staging.postgres import StagingServer, scratch_database
from staging.seed import seed_api_credentials
from tests.evidence.project import run, run_folder
from tests.harness import read_evidence
from tests.rotation.live_crm import LiveCrm, live_crm

PSQL = shutil.which("psql")
GUARD = re.compile(r"pg_temp\.recorded_key\(key, '[^']*', :'[^']*'\)")


@pytest.fixture(scope="module")
def rotated(pg: StagingServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCrm]:
    with live_crm(pg.admin_dsn, tmp_path_factory.mktemp("rotated"), 30) as world:
        seed_api_credentials(world.dsn, world.old_key, {s: generate_key() for s in ("twilio", "smtp")})
        done = world.rotate()
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        yield world


def log_every_statement(admin_dsn: str, dsn: str) -> None:
    """As a server an auditor may meet: every statement of every new session of the database logged."""
    name = conninfo_to_dict(dsn)["dbname"]
    with connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET log_statement = 'all'").format(sql.Identifier(str(name))))


def psql(dsn: str, text: str, keys: dict[str, str], workdir: Path, *, setup: str = "",
         variables: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The query as an auditor runs it: each key in its file in the folder psql runs in, the fingerprints as psql
    variables, the setup then the query with -f, in one session."""
    assert PSQL is not None
    workdir.mkdir(parents=True, exist_ok=True)
    for file, value in keys.items():
        (workdir / file).write_text(value + "\n")
    (workdir / "setup.sql").write_text(setup)
    (workdir / "query.sql").write_text(text)
    args = [PSQL, dsn, "-X", "-q", "-A", "-F", "|", "-P", "footer=off", "-v", "ON_ERROR_STOP=1"]
    args += [a for name, value in (variables or {}).items() for a in ("-v", f"{name}={value}")]
    args += ["-f", "setup.sql", "-f", "query.sql"]
    return subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=60, check=False)


def row(done: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert done.returncode == 0, done.stderr
    header, values = done.stdout.strip().splitlines()[-2:]
    return {name: int(value) for name, value in zip(header.split("|"), values.split("|"), strict=True)}


def key_populations(run: Path) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in read_evidence(run) if e["type"] == "population"]


@pytest.mark.skipif(PSQL is None, reason="psql is not installed (.ci/run installs PostgreSQL)")
def test_every_reported_population_query_returns_its_figure_in_psql_and_fails_with_a_wrong_key(
        rotated: LiveCrm, pg: StagingServer, tmp_path: Path) -> None:
    log_every_statement(pg.admin_dsn, rotated.dsn)
    log_start = pg.server_log.stat().st_size if pg.server_log else 0
    [run] = rotated.folders()
    populations = key_populations(run.path)
    keys = {"new_key": rotated.key_in_env().reveal(), "old_key": rotated.old_key.reveal()}
    assert {p["label"] for p in populations} >= {"values in crm_client_preferences verified under the new key",
                                                  "values in crm_client_preferences the old key no longer opens",
                                                  "values in security_api_credentials verified under the new key"}
    assert [p["label"] for p in populations if p["query"] is None] == []
    assert "encrypted-looking values the old key no longer opens" in {p["label"] for p in populations}
    for n, population in enumerate(p for p in populations if p["query"] is not None):
        query, label = population["query"], population["label"]
        sql, setup, variables = query["sql"], query["setup"], query["variables"]
        assert "rotation_runbook." not in sql + setup, f"{label}: the suite's own helpers in an auditor's query"
        assert all(k not in sql + setup + str(variables) for k in keys.values())
        right_keys = {file: keys[file.removesuffix(".txt")] for file in query["key_files"]}
        for file in right_keys:  # loaded as COPY data, never in a statement's text
            assert f"\\copy {file.removesuffix('.txt')} FROM '{file}'" in sql
        right = row(psql(rotated.dsn, sql, right_keys, tmp_path / f"{n}-right", setup=setup, variables=variables))
        assert right == {query["returns"]["verified"]: population["verified"], "total": population["total"]}, label

        for file in right_keys:
            wrong = right_keys | {file: generate_key().reveal()}
            done = psql(rotated.dsn, sql, wrong, tmp_path / f"{n}-wrong-{file}", setup=setup, variables=variables)
            assert done.returncode != 0 and f"the key in {file} is sha256:" in done.stderr, (label, done)
            # without the fingerprint check: pgcrypto's own error, or a count that differs, except for the old key,
            # which a wrong key does not open either: the reason every query checks the key it was given
            unguarded = psql(rotated.dsn, GUARD.sub("key", sql), wrong, tmp_path / f"{n}-unguarded-{file}",
                             setup=setup, variables=variables)
            if file == "old_key.txt":
                assert row(unguarded) == right, label
            elif unguarded.returncode != 0:
                assert "Wrong key or corrupt data" in unguarded.stderr, (label, unguarded.stderr)
            else:
                assert row(unguarded)[query["returns"]["verified"]] == 0 != right["total"], label

    if pg.server_log:  # the server logged every statement of the auditor's sessions, and no key
        logged = pg.server_log.read_bytes()[log_start:].decode(errors="replace")
        assert "COPY  new_key FROM STDIN" in logged and "COPY  old_key FROM STDIN" in logged  # psql's own spacing
        assert keys["new_key"] not in logged and keys["old_key"] not in logged

    page = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", (run.path / "index.html").read_text())).split())
    census = populations[0]["query"]["census"]
    assert (f"{census['rows']:,} rows × 3 columns = {census['rows'] * 3:,} = {census['non_null']:,} non-NULL + "
            f"{census['nulls']:,} NULL") in page
    total = populations[0]["total"]
    assert f"opens with the new key: {total:,} of {total:,} · opens with the old key: 0" in page
    assert "verified and total" not in page


def test_a_window_query_is_half_open_to_the_millisecond_and_count_only() -> None:
    start = dt.datetime(2026, 3, 1, 10, 0, 0, 123000, tzinfo=dt.UTC)
    end = dt.datetime(2026, 3, 2, 10, 0, 0, 456000, tzinfo=dt.UTC)
    statement = "SELECT count(*) FROM access_log WHERE at > %(start)s AND at <= %(end)s"
    query = emergency_populations.in_window(statement, start, end, subject="access_log")
    assert query.sql == ("SELECT count(*) AS total FROM access_log WHERE at > '2026-03-01T10:00:00.123Z'::timestamptz "
                         "AND at <= '2026-03-02T10:00:00.456Z'::timestamptz;")
    assert dict(query.returns) == {"total": "total"}
    with pytest.raises(ValueError, match=r"\(start, end\]"):
        emergency_populations.in_window(statement.replace("> %(start)s AND at <= %(end)s",
                                                          "BETWEEN %(start)s AND %(end)s"), start, end, subject="x")
    with pytest.raises(ValueError, match="finer than a millisecond"):
        emergency_populations.in_window(statement, start.replace(microsecond=123456), end, subject="x")


def test_a_figure_without_a_query_is_not_shown_complete(pytester: pytest.Pytester,
                                                        project: Callable[..., Path]) -> None:
    """The project's step records 3 of 3 values without a query: the report says it cannot be re-performed, in the
    place where a figure with a query says "yes"."""
    root = project()
    run(pytester).assert_outcomes(passed=3)
    page = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", (run_folder(root) / "index.html").read_text())).split())
    row = re.search(r"3 of 3 values verified under the new key (?:\(.*?\) )?(.*?) (yes|not re-performable|no) ", page)
    assert row is not None, page[:3000]
    assert row[1].startswith("no psql query recorded") and row[2] == "not re-performable"


@pytest.mark.skipif(PSQL is None, reason="psql is not installed (.ci/run installs PostgreSQL)")
def test_a_window_query_counts_in_psql_what_the_window_holds(pg: StagingServer, tmp_path: Path) -> None:
    """Rows at the start, inside, at the end and half a millisecond past it: psql counts the inside and the end."""
    start = emergency_populations.to_millisecond(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    end = start + dt.timedelta(minutes=30, microseconds=123000)
    stamps = [start, start + dt.timedelta(microseconds=500), end - dt.timedelta(minutes=1), end,
              end + dt.timedelta(microseconds=500)]
    with scratch_database(pg.admin_dsn) as dsn:
        with connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE access_log (at timestamptz NOT NULL)")
            for stamp in stamps:
                conn.execute("INSERT INTO access_log VALUES (%s)", (stamp,))
        statement = "SELECT count(*) FROM access_log WHERE at > %(start)s AND at <= %(end)s"
        query = emergency_populations.in_window(statement, start, end, subject="access_log")
        assert row(psql(dsn, query.sql, {}, tmp_path)) == {"total": 3}
