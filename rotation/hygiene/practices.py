"""The runbook's Best Practices, each as a check that records what it found and fails with `CheckFailed` naming the
credential (by .env variable and fingerprint) and where, never its value."""

from __future__ import annotations

from pathlib import Path

from rotation.core.config import Config
from rotation.core.proof import Evidence, NotApplicable, require
from rotation.core.secret import Secret
from rotation.hygiene import checks
from rotation.hygiene.checks import AppFiles


def describe(files: AppFiles, config: Config, evidence: Evidence) -> None:
    """Record the repository and .env the checks look at; register every credential in .env with the leak scan."""
    for value in checks.credential_values(files.env_file, config).values():
        evidence.register_secret(value)
    found = checks.git(files.repo, "rev-parse", "HEAD", check=False)
    head = found.stdout.decode().strip() if found.returncode == 0 else "not a git repository"
    evidence.record("app repository", {"path": str(files.repo), "HEAD": head, ".env": str(files.env_file),
                                       "configured owner": files.owner}, source="git rev-parse HEAD")


def require_git(files: AppFiles) -> None:
    """The git checks apply only where the app's source is a git work tree."""
    inside = checks.git(files.repo, "rev-parse", "--is-inside-work-tree", check=False)
    if inside.returncode or inside.stdout.strip() != b"true":
        raise NotApplicable(f"{files.repo} is not a git repository: there is no .gitignore, index or history to "
                            "check (name the app's checkout with --app-repo)")


def require_ignored(files: AppFiles, evidence: Evidence) -> None:
    """Runbook: verify .env is in .gitignore (the repository's own, not a personal exclude file)."""
    require_git(files)
    verdict = checks.gitignore_verdict(files.repo, files.env_file)
    evidence.record(".env and git", verdict.__dict__, source=f"git check-ignore --no-index -v {verdict.path}")
    require(verdict.ignored and verdict.source_in_repo, verdict.problem() or "")


def require_untracked(files: AppFiles, evidence: Evidence) -> None:
    require_git(files)
    verdict = checks.gitignore_verdict(files.repo, files.env_file)
    evidence.record(".env tracked by git", verdict.tracked, source=f"git ls-files --error-unmatch {verdict.path}")
    require(not verdict.tracked, verdict.problem() or "")


def require_private(env_file: Path, evidence: Evidence) -> None:
    """Runbook: chmod 600 .env."""
    access = checks.file_access(env_file)
    evidence.record(".env access", access.describe(), source=f"stat {env_file}")
    require(access.mode == 0o600, f"{env_file.name} has mode {access.mode:04o}, not 0600 (runbook: chmod 600 .env)")


def require_owner(files: AppFiles, evidence: Evidence) -> None:
    """Runbook: chown eventuser:eventuser .env (or the account configured for this deployment)."""
    access = checks.file_access(files.env_file)
    evidence.record(".env owner", f"{access.owner}:{access.group}", source=f"stat {files.env_file}")
    problems = [p for p in checks.access_problems(access, files.owner) if p.startswith("owned")]
    require(not problems, f"{files.env_file.name}: {'; '.join(problems)}")


def require_all_present(files: AppFiles, config: Config, evidence: Evidence) -> None:
    values = checks.credential_values(files.env_file, config)
    evidence.record("credentials in .env", {c.env: v.fingerprint for c, v in values.items()},
                    source=f"python-dotenv parse of {files.env_file.name}; variables from {config.source}")
    missing = checks.missing_credentials(files.env_file, config)
    require(not missing, f"{files.env_file.name} lacks {', '.join(c.env for c in missing)}")


def require_strong(files: AppFiles, config: Config, evidence: Evidence) -> None:
    """Each credential meets its strength policy from the registry."""
    values = checks.credential_values(files.env_file, config)
    evidence.record("strength policies", {c.env: {**c.strength.__dict__, "length": len(v)} for c, v in values.items()},
                    source=f"{config.source}: [credentials.*] strength; rotation.core.keys.check_strength")
    problems = checks.strength_problems(values)
    require(not problems, "; ".join(problems))


def require_unique(files: AppFiles, config: Config, evidence: Evidence) -> None:
    shared = checks.shared_values(checks.credential_values(files.env_file, config))
    evidence.record("credentials sharing a value", [list(group) for group in shared],
                    source="every pair of credentials in .env compared (constant-time)")
    require(not shared, "; ".join(f"{' and '.join(group)} hold the same value" for group in shared))


def _by_env(files: AppFiles, config: Config) -> dict[str, Secret]:
    return {c.env: v for c, v in checks.credential_values(files.env_file, config).items()}


def require_not_in_tracked_files(files: AppFiles, config: Config, evidence: Evidence) -> None:
    require_git(files)
    leaks = checks.leaks_in_tracked_files(files.repo, _by_env(files, config))
    evidence.record("credentials in tracked files", [leak.line() for leak in leaks],
                    source="git ls-files; every tracked file read from disk and searched for each credential")
    require(not leaks, "; ".join(leak.line() for leak in leaks))


def require_not_in_history(files: AppFiles, config: Config, evidence: Evidence) -> None:
    require_git(files)
    leaks = checks.leaks_in_history(files.repo, _by_env(files, config))
    evidence.record("credentials in git history", [leak.line() for leak in leaks],
                    source="git cat-file --batch-all-objects --batch: every commit, tree, blob and tag searched")
    require(not leaks, "credential committed to the app repository (rotate it; rewriting history does not un-leak "
                       "it): " + "; ".join(leak.line() for leak in leaks))
