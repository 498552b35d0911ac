"""A staging CRM world: a scratch database with the CRM schema and seeded clients, the app's .env in a private
directory, and the app stand-in running on it, described as the same `Deployment` a live run acts on.

It meets what production has (see the CRM notes): the app's own ordinary role owns the database and its tables and
is not a superuser, and the world's DSN connects as it; the CRM's triggers; provider credentials Fernet-encrypted
under DB_ENCRYPTION_KEY in security_api_credentials; the app's real /health. When the world ends, every .env, backup
and pending-key file it held is deleted: nothing with a key outlives the session."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path

from rotation.core.app_control import AppCommands, run, wait_for_health
from rotation.core.config import Config, Stakeholders
from rotation.core.database import apply_runbook_schema, connect
from rotation.core.deployment import Deployment
from rotation.core.envfile import encode_value
from rotation.core.keys import generate_key
from rotation.core.secret import Secret, reveal
from staging.crm import apply_crm_schema
from staging.postgres import app_database, free_port
from staging.seed import seed_api_credentials, seed_clients

# Who a staging emergency notifies (the SMTP stand-in's mailbox receives it).
STAGING_STAKEHOLDERS = Stakeholders(security_team=("security@eventplanning.example.com",),
                                    system_administrators=("sysadmins@eventplanning.example.com",),
                                    compliance_officer=("compliance@eventplanning.example.com",),
                                    sender="alerts@eventplanning.example.com")


def stand_in_commands(env_file: Path, port: int) -> AppCommands:
    """The stand-in's commands, its real /health, and the proofs of the key it runs on: a probe that makes it read one
    client's e-mail address, and the pidfile (the process start)."""
    pidfile = env_file.parent / "app.pid"
    base = (f"{sys.executable} -m staging.app {{}} --env-file {env_file} --port {port} "
            f"--pidfile {pidfile} --log {env_file.parent / 'app.log'}")
    return AppCommands(start=base.format("start"), stop=base.format("stop"), restart=base.format("restart"),
                       reload=base.format("reload"), health_url=f"http://127.0.0.1:{port}/health",
                       health_timeout_s=5.0,  # the stand-in's start command returns only once it listens
                       probe_url=f"http://127.0.0.1:{port}{PROBE_PATH}", probe_field="email",
                       probe_column="crm_client_preferences.email_encrypted", pidfile=str(pidfile))


PROBE_PATH = "/staging/clients/{id}/email"  # staging.app serves it; a live app configures its own (rotation.toml)


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
    with app_database(admin_dsn) as dsn:
        key = generate_key()
        with connect(dsn) as conn:
            apply_crm_schema(conn)
            apply_runbook_schema(conn)
            conn.commit()
        seed_clients(dsn, key, rows)
        seed_api_credentials(dsn, key, api_credentials(config, extra_env or {}))
        env_file = workdir / ".env"
        write_env(env_file, {"DATABASE_URL": dsn, "DB_ENCRYPTION_KEY": key, **(extra_env or {})})
        app = stand_in_commands(env_file, free_port())
        deployment = Deployment("staging", dsn, env_file, app, staging_config(config), operator, server_log)
        try:
            run(app.start)
            wait_for_health(app.health_url, timeout_s=15)
            yield deployment
        finally:
            with contextlib.suppress(Exception):
                run(app.stop)
            remove_key_files(workdir)


def api_credentials(config: Config, env: Mapping[str, str | Secret]) -> dict[str, Secret]:
    """What the app keeps in security_api_credentials: each provider's credential by service name (the provider's
    name), the value of .env when the world has one, else a stand-in value."""
    return {c.provider: Secret(reveal(env[c.env])) if env.get(c.env) else generate_key()
            for c in config.credentials if c.provider != "database"}


KEY_FILES = (".env", ".rotation-pending.")
KEEP_KEY_FILES = "ROTATION_KEEP_KEY_FILES"  # =1: leave them (leak tests read the keys back afterwards; never live)


def remove_key_files(workdir: Path) -> None:
    """Every file under the world's directory that holds a key by design (.env, its backups and stale copies, the
    pending key), deleted at the end of the world."""
    if os.environ.get(KEEP_KEY_FILES) == "1":
        return
    for path in workdir.rglob("*"):
        if path.is_file() and path.name.startswith(KEY_FILES):
            path.unlink(missing_ok=True)


def probe_config(path: Path, app: AppCommands) -> Path:
    """The built-in configuration with the stand-in's probe in [app] (its commands come from the command line)."""
    text = resources.files("rotation.core").joinpath("rotation.toml").read_text()
    probe = (f'probe_url = "{app.probe_url}"\nprobe_field = "{app.probe_field}"\n'
             f'probe_column = "{app.probe_column}"\n')
    path.write_text(text.replace('systemd_unit = "event-planning-api"\n', probe))
    return path
