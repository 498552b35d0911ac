"""A staging CRM world: a scratch database with the CRM schema and seeded clients, the app's .env in a private
directory, and the app stand-in running on it, described as the same `Deployment` a live run acts on."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from rotation.core.app_control import AppCommands, run, wait_for_health
from rotation.core.config import Config, Stakeholders
from rotation.core.database import apply_runbook_schema, connect
from rotation.core.deployment import Deployment
from rotation.core.envfile import encode_value
from rotation.core.keys import generate_key
from rotation.core.secret import Secret, reveal
from staging.crm import apply_crm_schema
from staging.postgres import free_port, scratch_database
from staging.seed import seed_clients

# Who a staging emergency notifies (the SMTP stand-in's mailbox receives it).
STAGING_STAKEHOLDERS = Stakeholders(security_team=("security@eventplanning.example.com",),
                                    system_administrators=("sysadmins@eventplanning.example.com",),
                                    compliance_officer=("compliance@eventplanning.example.com",),
                                    sender="alerts@eventplanning.example.com")


def stand_in_commands(env_file: Path, port: int) -> AppCommands:
    base = (f"{sys.executable} -m staging.app {{}} --env-file {env_file} --port {port} "
            f"--pidfile {env_file.parent / 'app.pid'} --log {env_file.parent / 'app.log'}")
    return AppCommands(start=base.format("start"), stop=base.format("stop"), restart=base.format("restart"),
                       reload=base.format("reload"), health_url=f"http://127.0.0.1:{port}/health",
                       health_timeout_s=5.0)  # the stand-in's start command returns only once it listens


def staging_config(config: Config) -> Config:
    """The operator's configuration with what only staging has: stakeholders at the stand-in's mailbox when the
    configuration names none."""
    if config.stakeholders.all():
        return config
    return dataclasses.replace(config, stakeholders=STAGING_STAKEHOLDERS)


def write_env(path: Path, values: Mapping[str, str | Secret]) -> None:
    """The app's .env as an operator keeps it: comments, grouped settings, mode 0600, values quoted for dotenv."""
    lines = ["# CRM Communication Engine configuration (staging)", ""]
    lines += [f"{k}={encode_value(v) if isinstance(v, Secret) else reveal(v)}" for k, v in values.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")


@contextlib.contextmanager
def staging_world(admin_dsn: str, workdir: Path, config: Config, *, rows: int, operator: str,
                  server_log: Path | None = None, extra_env: Mapping[str, str | Secret] | None = None
                  ) -> Iterator[Deployment]:
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
        app = stand_in_commands(env_file, free_port())
        deployment = Deployment("staging", dsn, env_file, app, staging_config(config), operator, server_log)
        run(app.start)
        try:
            wait_for_health(app.health_url, timeout_s=15)
            yield deployment
        finally:
            with contextlib.suppress(Exception):
                run(app.stop)
