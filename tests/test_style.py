"""Project-wide checks: lint, no print/exit in the library, docstrings on public functions."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "spotkit"


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install 'spotkit[test]')")
    res = subprocess.run([ruff, "check", "spotkit", "tests", "benchmarks"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def _library_modules():
    return sorted(p for p in LIBRARY.rglob("*.py") if "cli" not in p.parts)


@pytest.mark.parametrize("path", _library_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_print_or_exit_in_library(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"print", "exit", "quit"}, f"{path}:{node.lineno}"
        if isinstance(node, ast.Attribute) and node.attr == "exit":
            assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), \
                f"sys.exit in library code at {path}:{node.lineno}"


def test_public_functions_have_docstrings():
    import importlib

    missing = []
    for pkg in ("spotkit", "spotkit.sim", "spotkit.io", "spotkit.catalog", "spotkit.runs",
                "spotkit.tomo", "spotkit.scattering", "spotkit.change", "spotkit.flows",
                "spotkit.compute", "spotkit.widgets"):
        mod = importlib.import_module(pkg)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if callable(obj) and not (obj.__doc__ or "").strip():
                missing.append(f"{pkg}.{name}")
    assert not missing, f"public callables without docstrings: {missing}"
