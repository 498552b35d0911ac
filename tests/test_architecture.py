"""The architecture, checked: layered imports, thin steps, and one list of credential types.

  - `lint-imports` (import-linter, contracts in pyproject.toml): the rotation library imports neither pytest nor
    staging/, the plugin package or the steps; the steps import no stand-in and no wire-level client (the plugin
    wires staging in); the layers go one way only. .ci/run runs `lint-imports` itself, before the tests.
  - Every step function has at most 10 lines and no branching, loop, exception handling or assert: the work and the
    checks live in rotation/ (or staging/), where they are typed and tested.
  - No code file outside the deployment configuration lists credential types: they come from the registry.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rotation.core.config import default_config

PROJECT = Path(__file__).resolve().parents[1]
STEP_DECORATORS = {"given", "when", "then", "step"}
MAX_STEP_LINES = 10
FORBIDDEN_IN_STEPS = (ast.If, ast.IfExp, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.Match, ast.Assert,
                      ast.With)


def lint_imports() -> str:
    return shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))


def test_import_contracts_hold() -> None:
    done = subprocess.run([lint_imports(), "--no-cache"], cwd=PROJECT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


STEPS_CONTRACT = "The steps call only the library and the plugin's fixtures: no stand-in, no wire-level client"


def contract_alone(name: str) -> str:
    """The project's import-linter settings with only the named contract, as a TOML file's text."""
    settings = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [c for c in settings["contracts"] if c["name"] == name]

    def table(values: dict[str, object]) -> list[str]:
        return [f"{key} = {json.dumps(value)}" for key, value in values.items()]

    return "\n".join(["[tool.importlinter]", *table({k: v for k, v in settings.items() if k != "contracts"}),
                      "[[tool.importlinter.contracts]]", *table(contract)]) + "\n"


@pytest.mark.parametrize("imported", ["staging.world", "psycopg"])
def test_the_steps_contract_can_fail(tmp_path: Path, imported: str) -> None:
    """A step module that imports a stand-in (or talks SQL itself) breaks the project's contract, which names it."""
    for package in ("rotation", "rotation_pytest", "rotation_suite", "rotation_suite/steps", "staging"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").touch()
    (tmp_path / "staging" / "world.py").touch()
    (tmp_path / "rotation_suite" / "steps" / "shortcut.py").write_text(f"import {imported}\n")
    (tmp_path / "contracts.toml").write_text(contract_alone(STEPS_CONTRACT))
    done = subprocess.run([lint_imports(), "--no-cache", "contracts.toml"], cwd=tmp_path, capture_output=True,
                          text=True, check=False, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"rotation_suite.steps.shortcut -> {imported}" in done.stdout, done.stdout[-4000:]


def step_functions(path: Path) -> list[ast.FunctionDef]:
    def is_step(decorator: ast.expr) -> bool:
        call = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = call.attr if isinstance(call, ast.Attribute) else getattr(call, "id", "")
        return name in STEP_DECORATORS

    tree = ast.parse(path.read_text(), filename=str(path))
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and any(is_step(d) for d in node.decorator_list)]


STEP_MODULES = sorted((PROJECT / "rotation_suite" / "steps").glob("*.py"))


@pytest.mark.parametrize("module", STEP_MODULES, ids=lambda p: p.name)
def test_step_functions_are_thin(module: Path) -> None:
    problems = []
    for func in step_functions(module):
        lines = func.end_lineno - func.lineno + 1  # type: ignore[operator]
        if lines > MAX_STEP_LINES:
            problems.append(f"{module.name}:{func.lineno} {func.name} has {lines} lines (at most {MAX_STEP_LINES})")
        for node in ast.walk(func):
            if isinstance(node, FORBIDDEN_IN_STEPS):
                problems.append(f"{module.name}:{node.lineno} {func.name} uses {type(node).__name__}: "
                                "move the logic into rotation/ or staging/")
    assert not problems, "\n".join(problems)


def test_the_thin_step_check_can_fail(tmp_path: Path) -> None:
    fat = tmp_path / "fat.py"
    fat.write_text("from pytest_bdd import then\n\n@then('x')\ndef x(a):\n    if a:\n        assert a\n")
    assert [f.name for f in step_functions(fat)] == ["x"]
    assert any(isinstance(n, ast.If) for n in ast.walk(step_functions(fat)[0]))


CODE = [p for pattern in ("rotation/**/*.py", "rotation_pytest/**/*.py", "staging/**/*.py", "rotation_suite/**/*.py",
                          "tests/**/*.py", "bench/**/*.py", "*.py", "*.ini")
        for p in PROJECT.glob(pattern) if p.resolve() != Path(__file__).resolve()]
WINDOW = 3  # lines: a list split over a few lines counts too


def lists_of_credential_types(text: str, types: tuple[str, ...]) -> list[int]:
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, types)) + r")\b")
    lines = text.splitlines()
    found = [set(pattern.findall(line)) for line in lines]
    return [i + 1 for i in range(len(lines)) if len(set().union(*found[i:i + WINDOW])) >= 2]


def test_no_credential_type_list_outside_the_configuration() -> None:
    types = default_config().types
    offenders = {str(p.relative_to(PROJECT)): lines for p in CODE
                 if (lines := lists_of_credential_types(p.read_text(errors="replace"), types))}
    assert not offenders, f"credential types listed in code (lines): {offenders}; read them from the configuration"


def test_the_credential_list_check_can_fail() -> None:
    types = default_config().types
    assert lists_of_credential_types(f'X = ("{types[0]}",\n      "{types[1]}")\n', types) == [1]
    assert lists_of_credential_types(f'X = "{types[0]}"\n', types) == []
