"""The operator's `rotation db-key rotate` against a scratch CRM and the app stand-in, as a live run sees them: a
DSN, an .env, the app's commands and health endpoint. Helpers read back the data, the run folders and the feature."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rotation.core import app_control, envfile
from rotation.core.config import default_config
from rotation.core.database import connect, key_ref
from rotation.core.secret import Secret
from rotation.db_key.procedure import CREDENTIAL
from rotation.db_key.reencrypt import TableSpec, pgcrypto_specs
from staging.postgres import free_port
from staging.world import remove_key_files, stand_in_commands, write_env
from tests.harness import PROJECT, StepResult, read_evidence, seeded_crm, step_results

FEATURE = "rotation/db_encryption_key.feature"
SPEC: TableSpec = pgcrypto_specs(default_config())[0]
ENV_NAME = default_config().credential(CREDENTIAL).env


def scheduled_steps() -> list[str]:
    """`Keyword text` of every step of the feature's @scheduled scenario, Background first, as the feature says."""
    from pytest_bdd.feature import get_feature

    feature = get_feature(str(PROJECT / "rotation_suite" / "features"), FEATURE)
    scheduled = [t for t in feature.scenarios.values() if "scheduled" in t.tags]
    assert len(scheduled) == 1, f"{FEATURE} must have exactly one @scheduled scenario"
    return [f"{s.keyword} {s.name}" for s in scheduled[0].steps]


def plaintexts(dsn: str, key: Secret) -> list[tuple[object, ...]]:
    """Every row's decrypted values under `key` (a value the key does not open reads as None)."""
    columns = ", ".join(f"rotation_runbook.try_decrypt({c}, {key_ref('k')})" for c in SPEC.columns)
    with connect(dsn, keys={"k": key}) as conn:
        return conn.execute(f"SELECT {SPEC.pk}, {columns} FROM {SPEC.table} ORDER BY {SPEC.pk}").fetchall()


def plaintexts_day_one(dsn: str, key: Secret) -> list[tuple[object, ...]]:
    """As plaintexts, before the suite's schema exists (pgcrypto alone: every value must open with `key`)."""
    columns = ", ".join(f"CASE WHEN {c} IS NULL THEN NULL ELSE pgp_sym_decrypt({c}, {key_ref('k')}) END"
                        for c in SPEC.columns)
    with connect(dsn, keys={"k": key}) as conn:
        return conn.execute(f"SELECT {SPEC.pk}, {columns} FROM {SPEC.table} ORDER BY {SPEC.pk}").fetchall()


@dataclass
class RunFolder:
    path: Path

    def entries(self) -> list[dict[str, object]]:
        return read_evidence(self.path)

    def steps(self) -> list[StepResult]:
        return step_results(self.path)

    def rotation_ids(self) -> set[str]:
        """Every rotation id the evidence names (each DB key step records it as `rotation`)."""
        return {str(e["value"]["rotation"]) for e in self.entries()  # type: ignore[index]
                if e["type"] == "evidence" and isinstance(e["value"], dict) and "rotation" in e["value"]}

    def scenario(self) -> dict[str, object]:
        found = [e for e in self.entries() if e["type"] == "scenario"]
        assert len(found) == 1, found
        return found[0]


@dataclass
class LiveCrm:
    dsn: str
    env_file: Path
    old_key: Secret
    app: app_control.AppCommands
    reports: Path
    before: list[tuple[object, ...]]

    config: Path | None = None  # a deployment configuration for the command (e.g. the app's probe), else built-in
    extra: tuple[str, ...] = ()  # more options for the command (e.g. --stop-the-world)

    def command(self, action: str = "rotate") -> list[str]:
        config = [f"--config={self.config}"] if self.config else []
        return [sys.executable, "-m", "rotation", "db-key", action, *config, f"--dsn={self.dsn}",
                f"--env-file={self.env_file}", f"--app-start={self.app.start}", f"--app-stop={self.app.stop}",
                f"--app-restart={self.app.restart}", f"--app-reload={self.app.reload}",
                f"--health-url={self.app.health_url}", "--workers=2", "--operator=test-operator",
                "--change-id=CHG-0009", "--requester=test-requester", "--approver=test-approver",
                f"--reports-dir={self.reports}",
                "--allow-staging-endpoints", "--confirm-live", *self.extra]

    def rotate(self, action: str = "rotate", *, kill_after: str | None = None, addopts: str = "",
               environ: dict[str, str] | None = None, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_TEST_", "PYTEST_ADDOPTS"))}
        env |= {"PYTHONPATH": str(PROJECT), "PYTEST_ADDOPTS": addopts, **(environ or {})}
        if kill_after is not None:
            env |= {"PYTEST_ADDOPTS": f"{addopts} -p tests.faults", "ROTATION_TEST_KILL_AFTER": kill_after}
        return subprocess.run(self.command(action), cwd=PROJECT, env=env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)

    def popen(self) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(PROJECT)}
        return subprocess.Popen(self.command(), cwd=PROJECT, env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)

    def key_in_env(self) -> Secret:
        return envfile.get_secret(self.env_file, ENV_NAME)

    def folders(self) -> list[RunFolder]:
        """Run folders under the reports dir, oldest first."""
        found = [p for p in self.reports.glob("*-*") if p.is_dir() and (p / "evidence.jsonl").exists()]
        return [RunFolder(p) for p in sorted(found, key=lambda p: p.name)]

    def assert_rotated(self) -> Secret:
        """Every value reads back under the key now in .env, equal to its plaintext before; none under the old key."""
        new_key = self.key_in_env()
        assert new_key != self.old_key, ".env still holds the old key"
        assert plaintexts(self.dsn, new_key) == self.before, "values differ from their plaintext before the rotation"
        assert all(v is None for row in plaintexts(self.dsn, self.old_key) for v in row[1:]), \
            "values still open with the old key"
        return new_key


@contextlib.contextmanager
def live_crm(admin_dsn: str, workdir: Path, rows: int, *, runbook_schema: bool = True) -> Iterator[LiveCrm]:
    """A seeded scratch CRM, its .env (mode 0600) and the app stand-in running on it; torn down afterwards. Without
    `runbook_schema`, the database holds only the app's migrations (day one)."""
    app_dir = workdir / "app"
    app_dir.mkdir(mode=0o700, parents=True)
    with seeded_crm(admin_dsn, rows, runbook_schema=runbook_schema) as (dsn, key):
        env_file = app_dir / ".env"
        write_env(env_file, {"DATABASE_URL": dsn, ENV_NAME: Secret(key)})
        app = stand_in_commands(env_file, free_port())
        app_control.run(app.start)
        try:
            app_control.wait_for_health(app.health_url, timeout_s=15)
            before = plaintexts(dsn, Secret(key)) if runbook_schema else plaintexts_day_one(dsn, Secret(key))
            yield LiveCrm(dsn, env_file, Secret(key), app, workdir / "reports", before)
        finally:
            with contextlib.suppress(Exception):
                app_control.run(app.stop)
            remove_key_files(app_dir)
