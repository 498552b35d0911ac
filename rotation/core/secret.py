"""A credential's string that names itself by fingerprint: `repr()` (and so pytest's tracebacks, assertion messages
and dataclass reprs) shows `<secret sha256:...>`, while the value still works wherever a str is needed."""

from __future__ import annotations

from rotation.core.keys import fingerprint


class Secret(str):
    __slots__ = ()

    def __repr__(self) -> str:
        return f"<secret {fingerprint(self)}>"


def secret(value: str) -> Secret:
    return value if isinstance(value, Secret) else Secret(value)
