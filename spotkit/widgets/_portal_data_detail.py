"""What the Data panel shows about one dataset, as plain values (no widgets).

:func:`describe` turns a :class:`spotkit.catalog.DatasetOverview` (one read of the
catalog) into a :class:`DatasetDetail`: fields, metadata, files with their replicas, the
lineage as columns of clickable nodes (raw data -> runs -> products), the runs with their
errors and executed notebooks, the frame marks and the preview images (their bytes read
here, in the background, never while drawing). :func:`lab_url` makes the JupyterLab link
of an executed notebook.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from spotkit.catalog import DatasetOverview, Run

logger = logging.getLogger(__name__)

__all__ = ["DatasetDetail", "GraphNode", "describe", "find_lab_root", "format_size", "lab_url"]

#: Preview images read per dataset, and the largest file read (bytes).
MAX_PREVIEWS = 4
MAX_PREVIEW_BYTES = 4_000_000

#: colours of run states and dataset statuses in the panel
STATE_COLOURS = {"completed": "#1a7f37", "failed": "#cf222e", "running": "#0969da",
                 "queued": "#6e7781", "cancelled": "#9a6700", "quarantined": "#cf222e"}


def format_size(size: int | None) -> str:
    """Bytes for people: ``None`` -> ``""``, ``1536`` -> ``"1.5 kB"``.

    Examples
    --------
    >>> format_size(1536), format_size(3_200_000_000)
    ('1.5 kB', '3.2 GB')
    """
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover


def lab_url(path: str | os.PathLike | None, root: str | os.PathLike | None, *,
            base_url: str = "/") -> str | None:
    """The JupyterLab address that opens ``path``: ``<base_url>lab/tree/<path below root>``.

    Parameters
    ----------
    path : path-like or None
        A file (an executed notebook).
    root : path-like or None
        The Jupyter server's root folder (``ServerApp.root_dir``).
    base_url : str, optional
        The server's base URL (``"/"``, or ``"/user/alice/"`` on JupyterHub).

    Returns
    -------
    str or None
        ``None`` when there is no path or root, or the file is outside the root (the
        server cannot open it; show the path instead).

    Examples
    --------
    >>> lab_url("/home/ada/runs/run-1/out.ipynb", "/home/ada")
    '/lab/tree/runs/run-1/out.ipynb'
    >>> lab_url("/scratch/x.ipynb", "/home/ada") is None
    True
    >>> lab_url("/srv/a b.ipynb", "/srv", base_url="/user/ada/")
    '/user/ada/lab/tree/a%20b.ipynb'
    """
    if path is None or root is None:
        return None
    try:
        below = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        return None
    base = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    return f"{base}lab/tree/{quote(PurePosixPath(*below.parts).as_posix())}"


def find_lab_root() -> tuple[str | None, str]:
    """The root folder and base URL of the Jupyter server this kernel most likely runs
    under: ``$SPOTKIT_LAB_ROOT`` (and ``$SPOTKIT_LAB_BASE_URL``) if set, else the running
    server (its ``jpserver-*.json`` runtime file) whose root holds the current folder;
    ``(None, "/")`` if none."""
    env = os.environ.get("SPOTKIT_LAB_ROOT")
    if env:
        return env, os.environ.get("SPOTKIT_LAB_BASE_URL", "/")
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return None, "/"
    here = os.path.abspath(os.getcwd())
    best: tuple[str | None, str] = (None, "/")
    for info in sorted(Path(jupyter_runtime_dir()).glob("jpserver-*.json")):
        try:
            server = json.loads(info.read_text())
        except (OSError, ValueError) as exc:  # a stale or unreadable file: skip it
            logger.debug("skipping %s: %s", info, exc)
            continue
        root = os.path.abspath(server.get("root_dir") or server.get("notebook_dir") or "/")
        inside = here == root or here.startswith(root.rstrip("/") + "/")
        if inside and (best[0] is None or len(root) > len(best[0])):
            best = (root, server.get("base_url") or "/")
    return best


@dataclass(frozen=True)
class GraphNode:
    """One node of the lineage graph: a dataset (clickable: selects it) or a run."""

    id: str
    type: str          # "dataset" or "run"
    label: str         # short text on the node
    tooltip: str       # the longer description
    state: str         # dataset status or run state
    focus: bool = False  # the selected dataset
    dataset_id: str | None = None  # what clicking selects (a run: its input dataset)


@dataclass(frozen=True)
class DatasetDetail:
    """Everything the panel shows about the selected dataset, as plain values.

    Attributes
    ----------
    id, kind, status, title : str
    fields : tuple of (str, str)
        Beamline, sample, proposal, times, ... for a small table.
    metadata : str
        The metadata as indented JSON.
    files : tuple of dict
        ``{"role", "path", "size", "format", "sha256", "registered", "replicas"}``, where
        replicas is a tuple of ``{"location", "path", "state", "verified_at", "detail"}``.
    graph : tuple of tuple of GraphNode
        The lineage in columns, oldest first: datasets of one generation, then the runs
        that made the next generation, ... (raw -> runs -> derived).
    graph_edges : tuple of (str, str)
        ``(from node id, to node id)``.
    graph_truncated : bool
    runs : tuple of dict
        The runs made on the dataset (and the one that made it): ``{"id", "state",
        "notebook", "target", "started", "duration", "error", "output", "url",
        "job_id", "parameters"}``; ``url`` opens the executed notebook in JupyterLab.
    marks : tuple of dict
        ``{"label", "frames", "count", "reasons"}`` per label, frames as ranges.
    previews : tuple of dict
        ``{"dataset_id", "path", "format", "title", "data", "error"}``: the image bytes,
        or why they were not read.
    """

    id: str
    kind: str
    status: str
    title: str
    fields: tuple[tuple[str, str], ...]
    metadata: str
    files: tuple[dict, ...]
    graph: tuple[tuple[GraphNode, ...], ...]
    graph_edges: tuple[tuple[str, str], ...]
    graph_truncated: bool
    runs: tuple[dict, ...]
    marks: tuple[dict, ...]
    previews: tuple[dict, ...] = field(default_factory=tuple)


def _time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _ranges(frames: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out, start, prev = [], None, None
    for f in [*sorted(frames), None]:
        if start is None:
            start = prev = f
        elif f is not None and prev is not None and f == prev + 1:
            prev = f
        else:
            out.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = f
    return ", ".join(out)


def _run_row(run: Run, lab: tuple[str | None, str]) -> dict[str, Any]:
    error = ""
    if run.state == "failed" or run.error_name or run.error_message:
        cell = f" in cell {run.error_cell}" if run.error_cell is not None else ""
        error = f"{run.error_name or 'error'}{cell}: {run.error_message or ''}".strip()
    duration = run.duration
    output = str(run.output_notebook) if run.output_notebook else ""
    return {
        "id": run.id, "state": run.state, "notebook": run.notebook.name,
        "target": run.target, "started": _time(run.started_at),
        "duration": f"{duration.total_seconds():.1f} s" if duration is not None else "",
        "error": error, "output": output,
        "url": lab_url(run.output_notebook, lab[0], base_url=lab[1]) if output else None,
        "job_id": run.job_id or "", "outputs": tuple(run.outputs),
        "parameters": json.dumps(run.parameters, sort_keys=True, default=str),
    }


def _graph(view: DatasetOverview):
    g = view.lineage
    columns: list[tuple[GraphNode, ...]] = []
    edges: list[tuple[str, str]] = []
    for i, ids in enumerate(g.columns()):
        if i:  # the runs that made this generation, between it and the one before
            runs = sorted({r for d in ids for r in g.runs_into(d)})
            if runs:
                columns.append(tuple(_run_node(g.runs[r]) for r in runs if r in g.runs))
        columns.append(tuple(_dataset_node(g.datasets[d], d == g.focus) for d in ids))
    # the focus dataset's own runs that made nothing shown (failed runs, most often)
    shown = {n.id for col in columns for n in col}
    idle = [r for r in view.runs if r.id not in shown]
    if idle:
        at = next(i for i, col in enumerate(columns) if any(n.focus for n in col))
        nodes = tuple(_run_node(r) for r in idle[:8])
        if at + 1 < len(columns) and columns[at + 1] and columns[at + 1][0].type == "run":
            columns[at + 1] = columns[at + 1] + nodes
        else:
            columns.insert(at + 1, nodes)
    for parent, child, run in g.edges:
        if run and run in g.runs:
            edges += [(parent, run), (run, child)]
        else:
            edges.append((parent, child))
    edges += [(r.dataset_id, r.id) for r in idle[:8]]
    return tuple(columns), tuple(dict.fromkeys(edges))


def _dataset_node(ds, focus: bool) -> GraphNode:
    label = f"{ds.kind} {ds.sample or ''}".strip()
    tooltip = f"{ds.id} {ds.kind} [{ds.status}] {ds.title or ''}".strip()
    return GraphNode(ds.id, "dataset", label, tooltip, ds.status, focus, ds.id)


def _run_node(run: Run) -> GraphNode:
    tooltip = run.summary()
    return GraphNode(run.id, "run", f"{run.notebook.stem} ({run.state})", tooltip, run.state,
                     False, run.dataset_id)


def _read_previews(view: DatasetOverview, cache: dict | None) -> tuple[dict, ...]:
    out = []
    for preview in view.previews[:MAX_PREVIEWS]:
        item: dict[str, Any] = {"dataset_id": preview.dataset_id, "path": str(preview.path),
                                "format": preview.format, "title": preview.title,
                                "data": None, "error": ""}
        try:
            stat = preview.path.stat()
            key = (str(preview.path), stat.st_mtime_ns, stat.st_size)
            if stat.st_size > MAX_PREVIEW_BYTES:
                item["error"] = f"{format_size(stat.st_size)}: too large to show here"
            elif cache is not None and key in cache:
                item["data"] = cache[key]  # unchanged since the last refresh: not read again
            else:
                item["data"] = preview.path.read_bytes()
                if cache is not None:
                    if len(cache) >= 4 * MAX_PREVIEWS:
                        cache.pop(next(iter(cache)))
                    cache[key] = item["data"]
        except OSError as exc:
            item["error"] = f"cannot read {preview.path}: {exc.strerror or exc}"
        out.append(item)
    return tuple(out)


def describe(view: DatasetOverview, *, lab: tuple[str | None, str] = (None, "/"),
             previews: bool = True, cache: dict | None = None) -> DatasetDetail:
    """Turn one read of the catalog about a dataset into what the panel shows.

    Parameters
    ----------
    view : spotkit.catalog.DatasetOverview
    lab : (str or None, str), optional
        The Jupyter server's root folder and base URL (see :func:`find_lab_root`), for
        the links that open executed notebooks; ``(None, "/")``: no links.
    previews : bool, optional
        Read the preview images' bytes (file I/O: call it off the kernel's thread).
    cache : dict, optional
        Image bytes by (path, modification time, size), kept between calls: an image
        that has not changed is not read again.

    Returns
    -------
    DatasetDetail
    """
    ds = view.dataset
    fields = (("id", ds.id), ("kind", ds.kind), ("status", ds.status),
              ("beamline", ds.beamline or ""), ("sample", ds.sample or ""),
              ("proposal", ds.proposal or ""), ("title", ds.title or ""),
              ("start", _time(ds.start_time)), ("end", _time(ds.end_time)),
              ("ingested", _time(ds.ingested_at)), ("made by run", ds.run_id or ""))
    files = tuple({
        "role": f.role, "path": str(f.path), "size": format_size(f.size),
        "format": f.format or "", "sha256": (f.sha256 or "")[:16],
        "registered": str(f.registered_path),
        "replicas": tuple({"location": r.location, "path": r.path, "state": r.state,
                           "verified_at": _time(r.verified_at), "detail": r.detail or ""}
                          for r in f.replicas),
    } for f in ds.files)
    runs = list(view.runs)
    if view.producing_run is not None and view.producing_run.id not in {r.id for r in runs}:
        runs.append(view.producing_run)
    by_label: dict[str, list[dict]] = {}
    for mark in view.frame_marks:
        by_label.setdefault(mark["label"], []).append(mark)
    marks = tuple({"label": label, "count": len(items),
                   "frames": _ranges([m["frame"] for m in items]),
                   "reasons": ", ".join(dict.fromkeys(m["reason"] for m in items
                                                      if m["reason"]))}
                  for label, items in sorted(by_label.items()))
    graph, edges = _graph(view)
    return DatasetDetail(
        id=ds.id, kind=ds.kind, status=ds.status, title=ds.title or "",
        fields=fields,
        metadata=json.dumps(ds.metadata, indent=2, sort_keys=True, default=str),
        files=files, graph=graph, graph_edges=edges,
        graph_truncated=view.lineage.truncated,
        runs=tuple(_run_row(r, lab) for r in runs), marks=marks,
        previews=_read_previews(view, cache) if previews else ())
