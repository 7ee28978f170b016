"""Every science function and class of spotkit.tomo is used in an example notebook.

The project rule: each science function gets an example notebook cell that CI executes
(tests/test_examples.py executes every notebook under examples/). This check is static, so
it is fast: it parses the code cells and looks for each public name of ``spotkit.tomo.__all__``
used as a name or an attribute (``tomo.normalize``, ``from spotkit.tomo import normalize``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

import spotkit.tomo

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.ipynb"))

#: Public names that are not called by users, each with the reason; keep this list short.
NOT_TAUGHT = {
    "AxisTilt": "result record of detect_tilt",
    "PipelineResult": "result record of TomoPipeline.run",
    "Problem": "result record of TomoPipeline.validate",
    "ReconInfo": "result record of reconstruct_with_info",
}


def _science_names() -> list[str]:
    # constants (CENTER_METHODS, ...) are ALL_CAPS; names are not resolved with getattr, so
    # lazily imported optional parts (widgets) are not imported here
    return sorted(n for n in spotkit.tomo.__all__ if not n.isupper() and n not in NOT_TAUGHT)


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


def test_every_tomo_science_name_has_an_example_cell():
    used = set().union(*(_names_used(nb) for nb in EXAMPLES))
    missing = [n for n in _science_names() if n not in used]
    assert not missing, (
        f"spotkit.tomo names used in no examples/*.ipynb code cell: {missing}. Add a cell to "
        "an example notebook (e.g. examples/tomography_101.ipynb) that uses each, or, for a "
        "name users never call, list it with its reason in NOT_TAUGHT."
    )


def test_not_taught_names_are_still_public():
    stale = sorted(set(NOT_TAUGHT) - set(spotkit.tomo.__all__))
    assert not stale, f"NOT_TAUGHT lists names no longer in spotkit.tomo.__all__: {stale}"


@pytest.mark.parametrize("notebook", EXAMPLES, ids=lambda p: p.name)
def test_example_code_cells_parse(notebook):
    _names_used(notebook)  # a syntax error would hide the names of the whole cell
