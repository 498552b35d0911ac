"""A small git repository standing in for the app's source tree in staging: the .env beside it is not committed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

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


def _commit(repo: Path, files: Mapping[str, str], message: str, remove: tuple[str, ...] = ()) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        _git(repo, "add", "--", name)
    for name in remove:
        _git(repo, "rm", "-q", "--", name)
    _git(repo, "commit", "-q", "-m", message)


def build_app_repo(repo: Path, *, ignore_env: bool = True, tracked_secret: str | None = None,
                   secret_in_history: str | None = None) -> Path:
    """git init in `repo` (the directory holding .env) with a few commits of source; the faults put a secret into a
    tracked file or into history only (committed, then deleted)."""
    _git(repo, "init", "-q", "-b", "main")
    rules = [r for r in GITIGNORE if ignore_env or r != ".env"]
    _commit(repo, {".gitignore": "\n".join(rules) + "\n", "README.md": "# event-planning-api (staging copy)\n"},
            "Initial commit")
    _commit(repo, {"app/settings.py": SETTINGS, ".env.example": EXAMPLE_ENV}, "Settings from the environment")
    if secret_in_history is not None:
        _commit(repo, {"app/local_settings.py": f'TWILIO_AUTH_TOKEN = "{secret_in_history}"\n'},
                "Local settings for debugging")
        _commit(repo, {}, "Remove local settings", remove=("app/local_settings.py",))
    if tracked_secret is not None:
        _commit(repo, {"app/twilio_debug.py": f'AUTH = "{tracked_secret}"  # TODO remove\n'}, "Twilio debugging")
    return repo
