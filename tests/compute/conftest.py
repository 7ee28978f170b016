"""Fixtures for the compute tests: a real single-node Slurm, pipeline notebooks, a dataset.

The session fixture ``slurm`` starts munged, slurmctld and slurmd (Debian ``slurm-wlm`` and
``munge``, installed by ``.ci/run``) with a private configuration, exports ``SLURM_CONF``
for the whole session, and stops every daemon it started at the end. It skips, saying why,
only when the programs are missing (or not root).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

sys.path.insert(0, str(Path(__file__).parent))
import slurm_cluster

PARAMS = """dataset_id = ""
catalog_path = ""
output_dir = "."
label = "x"
seconds = 0.0
fail = False
"""

# declares one output: a text file with the label as the notebook received it
BODY = """
import json, time, spotkit
from spotkit.runs import declare_output
ds = spotkit.open_catalog(catalog_path)[dataset_id]
time.sleep(seconds)
if fail:
    raise RuntimeError("asked to fail")
with open("label.json", "w") as f:
    json.dump({"label": label, "dataset": ds.id}, f)
declare_output("label.json", kind="test/label")
"""


def write_notebook(path: Path, *cells: str, params: str = PARAMS) -> Path:
    """A pipeline notebook: a ``parameters`` cell, then ``cells``."""
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                               "display_name": "Python 3"}})
    p = new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, *(new_code_cell(c) for c in cells)]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="session")
def slurm():
    """A running test Slurm (``slurm_cluster.SlurmCluster``), ``SLURM_CONF`` exported."""
    reason = slurm_cluster.skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = slurm_cluster.start_cluster()
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        cluster.stop()


@pytest.fixture(scope="session")
def label_notebook(tmp_path_factory) -> Path:
    """A tiny pipeline notebook (parameters ``label``, ``seconds``, ``fail``)."""
    return write_notebook(tmp_path_factory.mktemp("notebooks") / "label.ipynb", BODY)


@pytest.fixture
def raw(catalog, tiny_tomo):
    """The tiny simulated tomography scan, ingested into the test's catalog."""
    return catalog.ingest(tiny_tomo[0])
