"""A small git repository standing in for the app's source tree in staging: the .env beside it is not committed."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from rotation.core.config import Config
from rotation.core.deployment import Deployment
from rotation.core.envfile import read_env, set_value
from rotation.core.keys import generate_key
from rotation.core.secret import Secret
from rotation.hygiene.checks import AppFiles
from staging.graph_standin import new_token as graph_token
from staging.twilio_standin import new_token as twilio_token

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


# A first value for each credential the staging world's .env lacks, in the form its issuer gives it.
ISSUED_BY: Mapping[str, Callable[[], str | Secret]] = {
    "database": generate_key, "smtp": generate_key, "twilio": twilio_token, "whatsapp": graph_token}


def fill_credentials(env_file: Path, config: Config) -> None:
    """Staging's .env holds every credential of the registry: what the stand-ins issued where present, else new."""
    env = read_env(env_file)
    for credential in config.credentials:
        if not env.get(credential.env):
            set_value(env_file, credential.env, ISSUED_BY[credential.provider]())


def staging_app_files(deployment: Deployment, owner: str | None = None) -> AppFiles:
    """A small git repository around the world's .env (which is not committed), .env holding every credential."""
    fill_credentials(deployment.env_file, deployment.config)
    repo = build_app_repo(deployment.env_file.parent)
    return AppFiles(repo, deployment.env_file, owner or current_owner())
