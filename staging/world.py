"""A staging CRM world for one scenario: a scratch database with the CRM schema and seeded clients, the app's .env
in a private directory, and the app stand-in running on it."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rotation.core.app_control import AppCommands, run, wait_for_health
from rotation.core.database import apply_runbook_schema, connect
from rotation.core.keys import generate_key
from staging.crm import apply_crm_schema
from staging.postgres import free_port, scratch_database
from staging.seed import seed_clients


@dataclass(frozen=True)
class World:
    """What a scenario acts on, in staging or live alike."""

    target: str
    dsn: str
    env_file: Path
    app: AppCommands
    server_log: Path | None = None


def stand_in_commands(env_file: Path, port: int) -> AppCommands:
    base = (f"{sys.executable} -m staging.app {{}} --env-file {env_file} --port {port} "
            f"--pidfile {env_file.parent / 'app.pid'} --log {env_file.parent / 'app.log'}")
    return AppCommands(start=base.format("start"), stop=base.format("stop"), restart=base.format("restart"),
                       reload=base.format("reload"), health_url=f"http://127.0.0.1:{port}/health",
                       health_timeout_s=5.0)  # the stand-in's start command returns only once it listens


def write_env(path: Path, values: dict[str, str]) -> None:
    """The app's .env as an operator keeps it: comments, grouped settings, mode 0600."""
    lines = ["# CRM Communication Engine configuration (staging)", ""]
    lines += [f"{k}={v}" for k, v in values.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")


@contextlib.contextmanager
def staging_world(admin_dsn: str, workdir: Path, *, rows: int, server_log: Path | None = None,
                  extra_env: dict[str, str] | None = None) -> Iterator[World]:
    """Create the world, start the app stand-in, and tear both down afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    with scratch_database(admin_dsn) as dsn:
        key = generate_key()
        with connect(dsn) as conn:
            apply_crm_schema(conn)
            apply_runbook_schema(conn)
            conn.commit()
        seed_clients(dsn, key, rows)
        env_file = workdir / ".env"
        write_env(env_file, {"DATABASE_URL": dsn, "DB_ENCRYPTION_KEY": key, **(extra_env or {})})
        world = World("staging", dsn, env_file, stand_in_commands(env_file, free_port()), server_log)
        run(world.app.start)
        try:
            wait_for_health(world.app.health_url, timeout_s=15)
            yield world
        finally:
            with contextlib.suppress(Exception):
                run(world.app.stop)
