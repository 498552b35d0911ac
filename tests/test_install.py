"""The tool installs like one: `python -m build` makes a wheel holding the suite (features, steps, suite.ini) and the
packages' data; in a fresh virtual environment `pip install <wheel>` (no extra) gives a `rotation` that runs the full
staging rehearsal from an empty directory, writes its run folder there (not into site-packages), and that folder
verifies. The evidence identifies the code by the package version and each feature file's SHA-256: there is no git
checkout to name a commit of. And the dependency sets of pyproject.toml are true to the imports.

Minutes, not seconds: one build, one venv (pip reuses its cache), one full rehearsal. Staging PostgreSQL comes as in
every rehearsal (ROTATION_DSN, else the installed server binaries); without either the test fails saying so."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from rotation.evidence.signing import file_sha256
from staging.postgres import pg_bindir
from tests.harness import PROJECT

pytestmark = pytest.mark.xdist_group("install")  # one worker builds and installs once for both tests

PACKAGES = ("rotation", "rotation_pytest", "rotation_suite", "staging")
# what a build or a run leaves in a source tree, never part of it
NOT_SOURCE = shutil.ignore_patterns(".git", "reports", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".venv",
                                    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", ".benchmarks")
BUILD_TIMEOUT, INSTALL_TIMEOUT, REHEARSAL_TIMEOUT = 900, 900, 3600


# The `rotation` command's own dependencies (pyproject.toml): the library outside rotation.cli never imports them.
COMMAND_ONLY = {"pytest", "pytest-bdd", "parse", "aiosmtpd"}
# Imported by a shipped package although no set names them, and why that is right.
BESIDE_AN_EXTRA = {
    "docker": "testcontainers' own dependency, imported beside it when the `docker` extra is there (staging.postgres)",
    "openapi-core": "the `test` extra's: only the contract tests import staging.contracts' validator",
}


def project() -> dict[str, object]:
    return dict(tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["project"])


def version() -> str:
    return str(project()["version"])


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: object) -> set[str]:
    assert isinstance(requirements, list)
    return {normal(m[0]) for r in requirements if (m := re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", str(r)))}


def imported_distributions(folder: Path, *, skip: tuple[str, ...] = ()) -> set[str]:
    """The distributions whose modules the package's files import, anywhere in them (lazy imports too)."""
    modules: set[str] = set()
    for path in folder.rglob("*.py"):
        if any(part in skip for part in path.relative_to(folder).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    own = {*PACKAGES, "tests", "__future__"}
    by_module = metadata.packages_distributions()
    third = sorted(modules - set(sys.stdlib_module_names) - own)
    unknown = [m for m in third if m not in by_module]
    assert not unknown, f"{folder.name} imports modules no installed distribution provides: {unknown}"
    return {normal(d) for m in third for d in by_module[m]}


def test_every_import_of_a_shipped_package_is_a_declared_dependency() -> None:
    """The dependency sets are true: the library needs only the library's set, and every third-party module a
    shipped package imports is declared (in the plain install, or an extra it is imported beside)."""
    base = requirement_names(project()["dependencies"])
    extras = project()["optional-dependencies"]
    assert isinstance(extras, dict)
    runtime_extras = set().union(*(requirement_names(v) for k, v in extras.items() if k != "test"))
    library = imported_distributions(PROJECT / "rotation", skip=("cli",))
    assert library <= base - COMMAND_ONLY, f"the library imports beyond its own set: {library - (base - COMMAND_ONLY)}"
    assert COMMAND_ONLY <= base, "a plain install must run the features"
    for package in PACKAGES:
        undeclared = imported_distributions(PROJECT / package) - base - runtime_extras - set(BESIDE_AN_EXTRA)
        assert not undeclared, f"{package} imports undeclared distributions: {sorted(undeclared)}"


def run(command: list[str], *, cwd: Path, timeout: int, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    assert done.returncode == 0, \
        f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def outside_env() -> dict[str, str]:
    """An operator's environment: nothing that points Python at this checkout (the installed package must stand
    alone), none of the test run's own variables (pytest's, xdist's, the suite's sabotage and kill switches)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "ROTATION_SABOTAGE", "ROTATION_KEEP_KEY_FILES")
            and not k.startswith(("PYTEST_", "ROTATION_TEST_"))}


@dataclass
class Installed:
    wheel: Path
    venv: Path

    @property
    def rotation(self) -> Path:
        return self.venv / "bin" / "rotation"

    def site_packages(self) -> Path:
        [found] = list((self.venv / "lib").glob("python3*/site-packages"))
        return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """`python -m build` over a copy of the source tree (the checkout stays untouched), then a fresh venv with the
    wheel installed by pip, with no extra."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    shutil.copytree(PROJECT, source, ignore=NOT_SOURCE, symlinks=True)
    dist = root / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], cwd=root, timeout=BUILD_TIMEOUT,
        env=outside_env())
    [wheel] = dist.glob("rotation_runbook-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=root, timeout=INSTALL_TIMEOUT, env=outside_env())
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], cwd=root,
        timeout=INSTALL_TIMEOUT, env=outside_env())
    yield Installed(wheel, venv)


def source_files(package: str) -> set[str]:
    """Every file of a package in the source tree (its Python modules and its data), as the wheel names them."""
    folder = PROJECT / package
    copied = {p.relative_to(PROJECT).as_posix() for p in folder.rglob("*") if p.is_file()}
    return {name for name in copied if "__pycache__" not in name and not name.endswith(".pyc")}


def feature_digests(suite: Path) -> dict[str, str]:
    return {p.relative_to(suite / "features").as_posix(): f"sha256:{file_sha256(p)}"
            for p in sorted((suite / "features").rglob("*.feature"))}


def test_the_wheel_holds_every_file_of_the_packages(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    for package in PACKAGES:
        missing = source_files(package) - names
        assert not missing, f"the wheel lacks files of {package}: {sorted(missing)}"
    features = {n for n in names if n.startswith("rotation_suite/features/") and n.endswith(".feature")}
    assert len(features) >= 10 and "rotation_suite/suite.ini" in names
    assert {n for n in names if n.startswith("rotation_suite/steps/") and n.endswith(".py")}


def test_the_installed_rotation_rehearses_from_an_empty_directory(installed: Installed,
                                                                  tmp_path: Path) -> None:
    if not os.environ.get("ROTATION_DSN") and pg_bindir() is None:
        pytest.fail("no staging PostgreSQL for the installed rehearsal: neither ROTATION_DSN nor the server binaries "
                    "(initdb, pg_ctl: `apt-get install postgresql`, or PG_BIN) are here")
    env = outside_env()
    assert run([str(installed.rotation), "--version"], cwd=tmp_path, timeout=120, env=env).strip() \
        == f"rotation (rotation-runbook) {version()}"

    empty = tmp_path / "operator"
    empty.mkdir()
    out = run([str(installed.rotation), "rehearse"], cwd=empty, timeout=REHEARSAL_TIMEOUT, env=env)

    assert not (installed.site_packages() / "rotation_suite" / "reports").exists(), "evidence written beside the code"
    [folder] = [p for p in (empty / "reports").iterdir() if p.is_dir() and not p.is_symlink() and p.name[0] != "."]
    assert (empty / "reports" / "latest").resolve() == folder.resolve()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["verdict"] == "PASSED", out[-4000:]
    said = re.search(r"verify with: rotation verify-evidence (\S+) --fingerprint (\S+)", out)
    assert said, out[-4000:]
    assert Path(said[1]).resolve() == folder.resolve() and said[2] == manifest["public_key_fingerprint"]

    meta = json.loads((folder / "evidence.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert meta["type"] == "run" and meta["suite_version"] == version()
    assert meta["git_commit"] is None and "not run from a git checkout" in meta["code_identity"]
    shipped = installed.site_packages() / "rotation_suite"
    assert meta["feature_digests"] == feature_digests(shipped) == feature_digests(PROJECT / "rotation_suite"), \
        "each feature file that ran, with the SHA-256 of the file the source tree holds"

    verified = subprocess.run([str(installed.rotation), "verify-evidence", str(folder), "--fingerprint", said[2]],
                              cwd=empty, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
