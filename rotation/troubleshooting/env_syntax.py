"""Troubleshooting "Application Won't Start After Rotation": verify .env syntax, restore it from the newest backup.

The runbook's `python -c "from dotenv import load_dotenv; load_dotenv(); print('OK')"` prints OK whatever the file
holds: python-dotenv only logs a warning for a line it cannot parse and drops it, so the app starts without that
setting. The check here parses every line with python-dotenv's own parser and names the bad ones by number, never
their content (a bad line usually holds a credential)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from dotenv.parser import parse_stream

from rotation.core import app_control, envfile
from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence, require


@dataclass(frozen=True)
class SyntaxReport:
    file: str
    lines: int
    unparsable: tuple[int, ...]  # line numbers python-dotenv cannot parse

    @property
    def ok(self) -> bool:
        return not self.unparsable

    def describe(self) -> str:
        if self.ok:
            return f"{self.file}: all {self.lines} lines parse"
        return f"{self.file}: line(s) {', '.join(map(str, self.unparsable))} of {self.lines} do not parse"


def env_syntax_errors(path: Path) -> list[int]:
    """Line numbers python-dotenv cannot parse."""
    text = path.read_text()
    return [binding.original.line for binding in parse_stream(io.StringIO(text)) if binding.error]


def check_syntax(path: Path) -> SyntaxReport:
    return SyntaxReport(path.name, len(path.read_text().splitlines()), tuple(env_syntax_errors(path)))


def verify_syntax(env_file: Path, evidence: Evidence) -> SyntaxReport:
    """Verify .env syntax (runbook), line by line, and record the result."""
    report = check_syntax(env_file)
    evidence.record(".env syntax", {"lines": report.lines, "unparsable lines": list(report.unparsable)},
                    source=f"python-dotenv's parser (dotenv.parser.parse_stream) over {env_file.name}")
    return report


def require_names_line(report: SyntaxReport, line: int) -> None:
    """The check names exactly this line, and no other."""
    require(report.unparsable == (line,), f"{report.describe()}; expected exactly line {line}")


def require_parses(env_file: Path, evidence: Evidence) -> None:
    report = verify_syntax(env_file, evidence)
    require(report.ok, report.describe())


def restore_newest_backup(env_file: Path) -> Path:
    """The runbook's `cp .env.backup.YYYYMMDD .env` with the newest backup, atomically and at mode 0600."""
    found = envfile.backups(env_file)
    if not found:
        raise envfile.EnvFileError(f"no backup of {env_file.name} beside it: nothing to restore")
    envfile.restore(found[0], env_file)
    return found[0]


def restore(deployment: Deployment, evidence: Evidence) -> Path:
    """Restore .env from the newest backup, and record which one."""
    backup = restore_newest_backup(deployment.env_file)
    evidence.record(".env restored", {"from": backup.name, "mode": oct(envfile.file_mode(deployment.env_file))},
                    source=f"cp {backup.name} {deployment.env_file.name} (temp file, fsync, rename; mode 0600)")
    return backup


def require_not_started(deployment: Deployment, evidence: Evidence) -> None:
    """The trouble is real: after a restart the application does not come up healthy."""
    result = app_control.wait_for_health(deployment.app.health_url, healthy=False,
                                         timeout_s=deployment.app.health_timeout_s)
    evidence.record("health after the restart", {"status": result.status_code or "no answer", "body": result.body},
                    source=f"GET {deployment.app.health_url}")
    require(not result.healthy, "the application started healthy: there is no trouble to troubleshoot")
