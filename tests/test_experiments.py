"""The experiment scripts: indexed, referring only to names odeexpm has, and (marked
slow: about 3 minutes) running end to end in their quick mode, writing their report and
figures into a temporary folder (the committed results are never touched)."""

import ast
import importlib
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / "experiments"
SCRIPTS = sorted(path.stem for path in EXPERIMENTS.glob("*.py") if not path.stem.startswith("_"))


def test_every_experiment_is_indexed():
    index = (EXPERIMENTS / "README.md").read_text()
    missing = [name for name in SCRIPTS if f"{name}.py" not in index]
    assert not missing, f"experiments/README.md does not index {missing}"


def _odeexpm_names(tree: ast.AST):
    """`(module, name)` for every `from odeexpm... import name` and `odeexpm.name` use."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("odeexpm"):
            yield from ((node.module, alias.name) for alias in node.names)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "odeexpm"
        ):
            yield "odeexpm", node.attr


@pytest.mark.parametrize("name", ["_common", *SCRIPTS])
def test_experiment_refers_to_existing_names(name):
    # A fast check that the scripts follow the library's API; the slow test runs them.
    tree = ast.parse((EXPERIMENTS / f"{name}.py").read_text())
    missing = [
        f"{module}.{attribute}"
        for module, attribute in _odeexpm_names(tree)
        if not hasattr(importlib.import_module(module), attribute)
        and importlib.util.find_spec(f"{module}.{attribute}") is None
    ]
    assert not missing, f"experiments/{name}.py refers to {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_experiment_runs_quick(name, tmp_path):
    completed = subprocess.run(
        [sys.executable, str(EXPERIMENTS / f"{name}.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (tmp_path / f"{name}.md").stat().st_size > 0
    assert list(tmp_path.glob(f"{name}*.png")), "no figure written"
