"""The teaching notebook examples/digital_twin.ipynb runs headlessly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "digital_twin.ipynb"


@pytest.mark.notebook
@pytest.mark.slow
def test_digital_twin_notebook_executes(tmp_path):
    import nbformat
    import papermill

    source = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in source.cells if c.cell_type == "code")
    t0 = time.perf_counter()
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(tmp_path / "out.ipynb"),
        parameters={"out_dir": str(tmp_path / "work"), "seed": 1},
        cwd=str(tmp_path),
        progress_bar=False,
        kernel_name="python3",
    )
    assert time.perf_counter() - t0 < 30
    assert (tmp_path / "work" / "scan.h5").is_file()
    assert (tmp_path / "work" / "series.poni").is_file()
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in out.cells for o in c.get("outputs", []))
    assert "true centre of rotation" in text
