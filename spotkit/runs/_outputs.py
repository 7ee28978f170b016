"""How a notebook declares the datasets it produced, and how a run reads them back.

A notebook calls :func:`declare_output` for each product. The declaration is displayed as a
raw ``application/vnd.spotkit.result+json`` bundle, so it travels inside the executed notebook
itself: no side channel, the same whether the run is local, on Slurm or at NERSC.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["RESULT_MIMETYPE", "declare_output", "read_declared_outputs"]

RESULT_MIMETYPE = "application/vnd.spotkit.result+json"


def declare_output(
    path: str | os.PathLike,
    *,
    kind: str,
    format: str | None = None,
    key: str | None = None,
    role: str = "data",
    title: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Declare a file the notebook produced, to be registered as a derived dataset.

    Call it in a notebook cell after the file is written. When the notebook runs through
    :func:`spotkit.run_notebook`, the run registers each declared output in the catalog with
    the raw dataset as parent and the run's provenance. Opened interactively, it only shows
    the declaration.

    Parameters
    ----------
    path : path-like
        The product file (resolved to an absolute path).
    kind : str
        Dataset kind, e.g. ``"tomo/slices"``, ``"saxs/iq"``, ``"image/png"``.
    format : str, optional
        ``"hdf5"``, ``"zarr"``, ``"npy"``, ``"png"``...; guessed from the suffix when omitted.
    key : str, optional
        Dataset path inside an HDF5 file or zarr group.
    role : str
        File role in the catalog (default ``"data"``).
    title : str, optional
        Human-readable title.
    metadata : dict, optional
        JSON-serialisable metadata stored with the derived dataset.

    Returns
    -------
    dict
        The declaration.

    Examples
    --------
    In a notebook the declaration becomes an output of the cell; outside a kernel it is
    printed:

    >>> decl = declare_output("slices.h5", kind="tomo/slices", key="/slices")
    ... # doctest: +ELLIPSIS
    {'application/vnd.spotkit.result+json': {...}, 'text/plain': 'spotkit output: ...'}
    >>> decl["format"], decl["key"], decl["path"].endswith("slices.h5")
    ('hdf5', '/slices', True)

    A run reads the declarations back from the executed notebook
    (:func:`read_declared_outputs`):

    >>> from nbformat.v4 import new_code_cell, new_notebook, new_output
    >>> shown = new_output("display_data", data={RESULT_MIMETYPE: decl})
    >>> nb = new_notebook(cells=[new_code_cell(outputs=[shown])])
    >>> [d["kind"] for d in read_declared_outputs(nb)]
    ['tomo/slices']
    """
    path = Path(path).resolve()
    if format is None:
        format = {".h5": "hdf5", ".hdf5": "hdf5", ".nxs": "hdf5", ".zarr": "zarr", ".npy": "npy",
                  ".png": "png"}.get(path.suffix.lower(), path.suffix.lstrip(".") or "file")
    decl = {
        "path": str(path),
        "kind": kind,
        "format": format,
        "key": key,
        "role": role,
        "title": title,
        "metadata": dict(metadata or {}),
    }
    json.dumps(decl)  # fail now, in the cell that declared it, if metadata is not JSON
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency of ipykernel
        return decl
    display({RESULT_MIMETYPE: decl, "text/plain": f"spotkit output: {kind} -> {path}"}, raw=True)
    return decl


def read_declared_outputs(nb) -> list[dict[str, Any]]:
    """Collect the :func:`declare_output` declarations from an executed notebook.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        The executed notebook.

    Returns
    -------
    list of dict
        Declarations in cell order; a path declared twice is kept once (the last one).
    """
    found: dict[str, dict[str, Any]] = {}
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if RESULT_MIMETYPE in data:
                decl = data[RESULT_MIMETYPE]
                if isinstance(decl, str):
                    decl = json.loads(decl)
                found[decl["path"]] = dict(decl)
    return list(found.values())
