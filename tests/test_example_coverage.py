"""Every science function and class of spotkit's science packages is used in an example.

The project rule: each science function gets an example notebook cell that CI executes
(tests/test_examples.py executes every notebook under examples/). This check is static, so
it is fast: it parses the code cells and looks for each public name of the ``__all__`` of
:data:`PACKAGES` used as a name or an attribute (``tomo.normalize``,
``from spotkit.tomo import normalize``).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.ipynb"))

#: The science packages (DESIGN.md: pure functions on numpy / dask / xarray), and the live
#: path's Python face.
PACKAGES = ("spotkit.tomo", "spotkit.scattering", "spotkit.change", "spotkit.monitor",
            "spotkit.live")

#: Public names that are not called by users, each with the reason; keep this list short.
NOT_TAUGHT = {
    "spotkit.tomo": {
        "AxisTilt": "result record of detect_tilt",
        "PipelineResult": "result record of TomoPipeline.run",
        "Problem": "result record of TomoPipeline.validate",
        "ReconInfo": "result record of reconstruct_with_info",
    },
    "spotkit.scattering": {
        "CalibrationResult": "result record of calibrate",
        "GeometryError": "an exception (spotkit.errors)",
    },
    "spotkit.change": {
        "ChangeEvent": "result record in ChangeResult.events",
        "ChangeResult": "result record of detect_changes",
        "FrameResult": "result record of OnlineDetector.update",
        "ReductionPlan": "result record of reduction_policy",
    },
    "spotkit.monitor": {
        "Delivery": "result record of Alerts.dispatch",
        "NotifyError": "an exception (a channel that cannot send)",
    },
    "spotkit.live": {
        "LiveStatus": "result record of LiveSession.status",
        "Subscription": "result record of subscribe",
    },
}


def _science_names(package: str) -> list[str]:
    # constants (CENTER_METHODS, ...) are ALL_CAPS; names are not resolved with getattr, so
    # lazily imported optional parts (widgets) are not imported here
    public = importlib.import_module(package).__all__
    return sorted(n for n in public if not n.isupper() and n not in NOT_TAUGHT[package])


def _cell_tree(source: str) -> ast.Module:
    # IPython magics and shell escapes are not Python
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    return ast.parse("\n".join(lines))


def _names_used(notebook: Path) -> set[str]:
    used: set[str] = set()
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(_cell_tree(cell.source)):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.alias):
                used.add(node.name.rsplit(".", 1)[-1])
    return used


@pytest.mark.parametrize("package", PACKAGES)
def test_every_science_name_has_an_example_cell(package):
    used = set().union(*(_names_used(nb) for nb in EXAMPLES))
    missing = [n for n in _science_names(package) if n not in used]
    assert not missing, (
        f"{package} names used in no examples/*.ipynb code cell: {missing}. Add a cell to "
        "an example notebook (e.g. examples/tomography_101.ipynb) that uses each, or, for a "
        "name users never call, list it with its reason in NOT_TAUGHT."
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_not_taught_names_are_still_public(package):
    stale = sorted(set(NOT_TAUGHT[package]) - set(importlib.import_module(package).__all__))
    assert not stale, f"NOT_TAUGHT lists names no longer in {package}.__all__: {stale}"


@pytest.mark.parametrize("notebook", EXAMPLES, ids=lambda p: p.name)
def test_example_code_cells_parse(notebook):
    _names_used(notebook)  # a syntax error would hide the names of the whole cell
