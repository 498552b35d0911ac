"""Facts defined once: one exception root per package, the proof method an enum."""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

import rotation
import staging
from rotation.core.app_control import AppCommands
from rotation.core.app_proof import ProofMethod, has_probe, proof_method
from rotation.core.errors import RotationError
from rotation.core.signals import Interrupted
from staging.errors import StagingError

NOT_ERRORS = {Interrupted}  # a signal (KeyboardInterrupt), not an error


def modules(package: ModuleType) -> list[ModuleType]:
    return [importlib.import_module(m.name) for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
            if not m.name.endswith("__main__")]  # running __main__ would run the command


def exceptions_defined_in(package: ModuleType) -> set[type[BaseException]]:
    return {obj for module in modules(package) for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, BaseException) and obj.__module__.startswith(package.__name__ + ".")}


@pytest.mark.parametrize(("package", "root"), [(rotation, RotationError), (staging, StagingError)],
                         ids=["rotation", "staging"])
def test_every_exception_of_a_package_has_its_root(package: ModuleType, root: type[Exception]) -> None:
    defined = exceptions_defined_in(package) - NOT_ERRORS - {root}
    assert len(defined) >= 2, "the walk found no exception classes: the test would prove nothing"
    strays = sorted(c.__qualname__ for c in defined if not issubclass(c, root))
    assert not strays, f"exceptions outside {root.__name__}: {strays}"


def test_an_error_keeps_its_builtin_base() -> None:
    from rotation.core.config import ConfigError
    from rotation.providers.base import ProviderError

    assert issubclass(ConfigError, ValueError) and issubclass(ProviderError, RuntimeError)


def test_the_proof_method_is_an_enum_shown_by_its_words() -> None:
    probe = AppCommands("start", "stop", "restart", None, "http://127.0.0.1:1/health",
                        probe_url="http://127.0.0.1:1/probe/{id}")
    remote = AppCommands("start", "stop", "restart", None, "https://app.example.com/health")
    assert proof_method(probe) is ProofMethod.PROBE_URL and has_probe(probe)
    assert proof_method(probe, key_probe=False) is ProofMethod.LISTENER and not ProofMethod.LISTENER.is_probe
    assert proof_method(remote) is None and not has_probe(remote)
    assert f"{ProofMethod.PROBE_URL}" == "probe (URL)"  # the evidence shows the words, as before


def test_an_operators_yaml_file_is_a_mapping_or_one_clear_error(tmp_path: Path) -> None:
    from rotation.core.yamlfile import load_mapping

    class NotesError(RotationError):
        pass

    good, listed, broken = tmp_path / "good.yaml", tmp_path / "list.yaml", tmp_path / "broken.yaml"
    good.write_text("root_cause: a token in a gist\n")
    listed.write_text("- a\n- b\n")
    broken.write_text("root_cause: [unclosed\n")
    assert load_mapping(good, NotesError, "the notes", ": root_cause") == {"root_cause": "a token in a gist"}
    with pytest.raises(NotesError, match=r"list.yaml must hold a mapping: root_cause$"):
        load_mapping(listed, NotesError, "the notes", ": root_cause")
    with pytest.raises(NotesError, match=r"^cannot read the notes .*broken.yaml: ParserError$"):
        load_mapping(broken, NotesError, "the notes", ": root_cause")
    with pytest.raises(NotesError, match="cannot read the notes .*missing.yaml: FileNotFoundError"):
        load_mapping(tmp_path / "missing.yaml", NotesError, "the notes", "")


def test_one_clock_one_key_pair() -> None:
    from rotation.core.clock import utc_now
    from rotation.core.database import NEW_KEY, OLD_KEY, key_ref

    assert utc_now().utcoffset() == dt.timedelta(0)
    assert (OLD_KEY, NEW_KEY) == (key_ref("old"), key_ref("new"))
