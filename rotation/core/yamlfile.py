"""Reading an operator's YAML file (a review policy, incident notes): a mapping, or one clear error naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_mapping(path: Path, error: type[Exception], what: str, holds: str) -> dict[str, Any]:
    """The mapping in `path`, or `error` saying which file (`what`) could not be read, or what it must hold."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"cannot read {what} {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise error(f"{path} must hold a mapping{holds}")
    return data
