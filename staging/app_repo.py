"""A small git repository standing in for the app's source tree in staging: the .env beside it is not committed."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from rotation.core.app_control import run, wait_for_health
from rotation.core.deployment import Deployment
from rotation.core.envfile import read_env, set_value
from rotation.hygiene.checks import AppFiles
from staging.provider_standins import provider_standins

GITIGNORE = [".env", ".env.backup.*", ".rotation-state.json", "*.pid", "*.log", "__pycache__/"]

SETTINGS = '''"""Settings of the CRM Communication Engine: every secret comes from the environment (.env)."""
import os

DB_ENCRYPTION_KEY = os.environ["DB_ENCRYPTION_KEY"]
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
WHATSAPP_ACCESS_TOKEN = os.environ.get("WHATSAPP_ACCESS_TOKEN", "")
SMTP_PASSWORD = os.environ.get("SMTP_PASSWORD", "")
'''

EXAMPLE_ENV = """# copy to .env and fill in; never commit .env
DATABASE_URL=postgresql://eventuser@localhost/eventdb
DB_ENCRYPTION_KEY=change-me
TWILIO_ACCOUNT_SID=ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
TWILIO_AUTH_TOKEN=change-me
WHATSAPP_ACCESS_TOKEN=change-me
SMTP_HOST=smtp.example.com
SMTP_PORT=587
SMTP_USERNAME=alerts@eventplanning.example.com
SMTP_PASSWORD=change-me
"""

GIT_ENV = {"GIT_AUTHOR_NAME": "Staging Developer", "GIT_AUTHOR_EMAIL": "dev@staging.invalid",
           "GIT_COMMITTER_NAME": "Staging Developer", "GIT_COMMITTER_EMAIL": "dev@staging.invalid",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={**os.environ, **GIT_ENV})


def commit(repo: Path, files: Mapping[str, str], message: str, remove: tuple[str, ...] = ()) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        _git(repo, "add", "--", name)
    for name in remove:
        _git(repo, "rm", "-q", "--", name)
    _git(repo, "commit", "-q", "-m", message)


def build_app_repo(repo: Path) -> Path:
    """git init in `repo` (the directory holding .env) with a few commits of source and a .gitignore listing .env."""
    _git(repo, "init", "-q", "-b", "main")
    commit(repo, {".gitignore": "\n".join(GITIGNORE) + "\n", "README.md": "# event-planning-api (staging copy)\n"},
           "Initial commit")
    commit(repo, {"app/settings.py": SETTINGS, ".env.example": EXAMPLE_ENV}, "Settings from the environment")
    return repo


# --- the app's files as the Best Practices scenarios see them in staging --------------------------------------------

def current_owner() -> str:
    """user:group of this process: the account that owns staging's .env."""
    return f"{pwd.getpwuid(os.geteuid()).pw_name}:{grp.getgrgid(os.getegid()).gr_name}"


@contextlib.contextmanager
def all_credentials(deployment: Deployment, directory: Path) -> Iterator[None]:
    """Staging's .env holds every credential of the registry, each issued by its provider: when the world has no
    provider stand-ins yet, start them, add their settings to .env and restart the app on it (so the app is healthy
    on exactly what .env holds, as in production)."""
    env = read_env(deployment.env_file)
    if all(env.get(c.env) for c in deployment.config.credentials):
        yield
        return
    with provider_standins(directory) as standins:
        for name, value in standins.env().items():
            if not env.get(name):
                set_value(deployment.env_file, name, value)
        run(deployment.app.restart)
        wait_for_health(deployment.app.health_url, timeout_s=deployment.app.health_timeout_s)
        yield


@contextlib.contextmanager
def staging_app_files(deployment: Deployment, directory: Path, owner: str | None = None) -> Iterator[AppFiles]:
    """A small git repository around the world's .env (which is not committed), .env holding every credential."""
    with all_credentials(deployment, directory):
        repo = build_app_repo(deployment.env_file.parent)
        yield AppFiles(repo, deployment.env_file, owner or current_owner())
