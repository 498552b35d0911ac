"""rotation-runbook: the CRM credential-rotation runbook as executable, auditable procedures."""

from importlib import metadata

DISTRIBUTION = "rotation-runbook"

try:  # the version is written once, in pyproject.toml; the installed distribution's metadata carries it
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "not installed (imported from a source tree)"
