"""Every teaching notebook in examples/ executes from top to bottom."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.ipynb"))


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("notebook", EXAMPLES, ids=lambda p: p.name)
def test_example_notebook_executes(notebook, tmp_path):
    import papermill

    from spotkit.runs import ensure_kernel

    papermill.execute_notebook(str(notebook), str(tmp_path / notebook.name),
                               kernel_name=ensure_kernel(), cwd=str(tmp_path),
                               progress_bar=False, execution_timeout=600)


def test_there_are_examples():
    assert EXAMPLES, "examples/ has no notebooks"
