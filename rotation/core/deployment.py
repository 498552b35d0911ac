"""What a procedure acts on: the database, the app's .env, the app itself and the deployment configuration. The same
type describes a staging world of stand-ins and the live systems."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rotation.core.app_control import AppCommands
from rotation.core.config import Config
from rotation.core.database import Dsn

Target = Literal["staging", "live"]


@dataclass(frozen=True)
class Deployment:
    target: Target
    dsn: str
    env_file: Path
    app: AppCommands
    config: Config
    operator: str
    server_log: Path | None = None  # staging: the server's log file, for the leak checks

    def __post_init__(self) -> None:
        object.__setattr__(self, "dsn", Dsn(self.dsn))  # its repr (a traceback, this dataclass's repr) masks a password

    @property
    def live(self) -> bool:
        return self.target == "live"
