"""Everything about one dataset at once: :func:`dataset_overview`, for an inspector panel.

A dataset's inspector shows its metadata, files and their replicas, its lineage (the raw
data it came from, the runs between, the products made from it), the notebook runs made
on it with their errors, its frame marks and its preview images. Asked attribute by
attribute (``ds.parents``, ``ds.children``, ``ds.runs``, ...), that is a query per node of
the lineage; :func:`dataset_overview` reads it all in one read of the catalog, a few
statements whatever the size of the lineage (one per generation walked, bounded by
``max_nodes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spotkit.catalog._common import _CHUNK, _RUN_COLUMNS, _dataset_id
from spotkit.catalog._dataset import Dataset
from spotkit.catalog._records import Run
from spotkit.errors import DatasetNotFoundError

if TYPE_CHECKING:
    from spotkit.catalog._catalog import Catalog

__all__ = ["DatasetOverview", "LineageGraph", "Preview", "dataset_overview"]

#: file formats shown as preview images
IMAGE_FORMATS = ("png", "jpg", "jpeg", "gif", "svg", "webp")


@dataclass(frozen=True)
class Preview:
    """An image file that previews a dataset (its own, or one a product of it holds).

    Attributes
    ----------
    dataset_id : str
        The dataset whose file it is.
    path : pathlib.Path
        The image (the best readable replica).
    format : str
        ``"png"``, ``"jpg"``, ...
    title : str
        What it shows (the owning dataset's title or kind).
    """

    dataset_id: str
    path: Path
    format: str
    title: str


@dataclass(frozen=True)
class LineageGraph:
    """A dataset's lineage around it: datasets (nodes), the runs that link them, edges.

    Attributes
    ----------
    focus : str
        The dataset the graph is about.
    datasets : dict of str to Dataset
        Every dataset in the graph, by id (the focus included).
    runs : dict of str to Run
        The runs on the graph's edges and the focus dataset's own runs, by id.
    edges : tuple of (str, str, str or None)
        ``(parent id, child id, run id)``: the child was made from the parent (by that run).
    generation : dict of str to int
        Each dataset's distance from the focus: negative for ancestors (raw data is the
        most negative), 0 the focus, positive for products.
    truncated : bool
        Whether the walk stopped at ``max_nodes`` or at the depth limit with more beyond.
    """

    focus: str
    datasets: dict[str, Dataset]
    runs: dict[str, Run]
    edges: tuple[tuple[str, str, str | None], ...]
    generation: dict[str, int]
    truncated: bool = False

    def columns(self) -> list[list[str]]:
        """Dataset ids by generation, oldest generation first; within one, by kind and id."""
        out: dict[int, list[str]] = {}
        for ds_id, gen in self.generation.items():
            out.setdefault(gen, []).append(ds_id)
        return [sorted(out[g], key=lambda i: (self.datasets[i].kind, i)) for g in sorted(out)]

    def runs_into(self, dataset_id: str) -> list[str]:
        """Ids of the runs that made ``dataset_id`` (usually one)."""
        return sorted({r for _, c, r in self.edges if c == dataset_id and r})


@dataclass(frozen=True)
class DatasetOverview:
    """One dataset with everything an inspector shows (see :func:`dataset_overview`).

    Attributes
    ----------
    dataset : Dataset
        Its fields, metadata and files (each with its replicas).
    runs : tuple of Run
        Notebook runs made on it, newest first (with their errors and executed notebooks).
    producing_run : Run or None
        The run that made it (derived data).
    lineage : LineageGraph
        Raw data -> runs -> products around it.
    frame_marks : tuple of dict
        Its frame marks (``{"frame", "label", "reason", "run_id", "marked_at"}``).
    previews : tuple of Preview
        Image files of it and of its products.
    """

    dataset: Dataset
    runs: tuple[Run, ...]
    producing_run: Run | None
    lineage: LineageGraph
    frame_marks: tuple[dict, ...] = ()
    previews: tuple[Preview, ...] = field(default_factory=tuple)


def _chunks(values: list[Any]):
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _walk(conn: Any, start: str, *, up: bool, depth: int, budget: int
          ) -> tuple[dict[str, int], set[tuple[str, str, str | None]], bool]:
    """Generation by generation from ``start``: parents (``up``) or children."""
    mine, other = ("child_id", "parent_id") if up else ("parent_id", "child_id")
    sign = -1 if up else 1
    found: dict[str, int] = {}
    edges: set[tuple[str, str, str | None]] = set()
    frontier, truncated = [start], False
    for level in range(1, depth + 1):
        if not frontier:
            break
        rows: list = []
        for chunk in _chunks(frontier):
            marks = ",".join("?" * len(chunk))
            rows += conn.execute(
                f"SELECT parent_id, child_id, run_id, {other} FROM lineage "  # noqa: S608
                f"WHERE {mine} IN ({marks}) ORDER BY {other} LIMIT ?",
                [*chunk, budget + 1]).fetchall()
        frontier = []
        for parent, child, run, new in rows:
            if new not in found and new != start:
                if len(found) >= budget:
                    truncated = True
                    continue
                found[new] = sign * level
                frontier.append(new)
            if new in found or new == start:
                edges.add((parent, child, run))
    else:
        if frontier:  # the depth limit: is there more beyond?
            marks = ",".join("?" * len(frontier[:_CHUNK]))
            truncated |= conn.execute(
                f"SELECT 1 FROM lineage WHERE {mine} IN ({marks}) LIMIT 1",  # noqa: S608
                frontier[:_CHUNK]).fetchone() is not None
    return found, edges, truncated


def dataset_overview(
    catalog: Catalog,
    dataset_id: str | Dataset,
    *,
    up: int = 8,
    down: int = 3,
    max_nodes: int = 60,
    max_runs: int = 50,
) -> DatasetOverview:
    """Read a dataset with its files, replicas, lineage, runs, frame marks and previews.

    One read of the catalog (a few statements: one per generation of lineage walked),
    instead of a query per parent, child and run.

    Parameters
    ----------
    catalog : Catalog
    dataset_id : str or Dataset
    up : int, optional
        Generations of ancestors to follow (raw data is usually 1 or 2 up).
    down : int, optional
        Generations of products to follow.
    max_nodes : int, optional
        At most this many datasets each way (``lineage.truncated`` says when more exist).
    max_runs : int, optional
        At most this many of the dataset's own runs, newest first.

    Returns
    -------
    DatasetOverview

    Raises
    ------
    spotkit.errors.DatasetNotFoundError
        If there is no such dataset.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog, dataset_overview
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> cat = open_catalog(work / "catalog.db")
    >>> _ = cat.bulk_load([{"kind": "tomo/raw", "sample": "bone", "start_time": 1.7e9}])
    >>> raw = cat.search()[0]
    >>> _ = (work / "slice.png").write_bytes(b"png")
    >>> png = cat.register_derived(files=[(work / "slice.png", "data")], kind="image/png",
    ...                            parents=[raw])
    >>> view = dataset_overview(cat, raw.id)
    >>> view.lineage.columns() == [[raw.id], [png.id]]
    True
    >>> [p.dataset_id for p in view.previews] == [png.id]
    True
    """
    ds_id = _dataset_id(dataset_id)
    for name, value in (("up", up), ("down", down), ("max_nodes", max_nodes),
                        ("max_runs", max_runs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    with catalog._read() as conn:
        found = catalog._load(conn, "WHERE d.id = ?", [ds_id])
        if not found:
            raise DatasetNotFoundError(ds_id, catalog._where_name())
        dataset = found[0]
        above, up_edges, cut_up = _walk(conn, ds_id, up=True, depth=up, budget=max_nodes)
        below, down_edges, cut_down = _walk(conn, ds_id, up=False, depth=down,
                                            budget=max_nodes)
        generation = {ds_id: 0, **above, **below}
        others = [i for i in generation if i != ds_id]
        datasets = {ds_id: dataset}
        for chunk in _chunks(others):
            marks = ",".join("?" * len(chunk))
            datasets.update((d.id, d) for d in catalog._load(
                conn, f"WHERE d.id IN ({marks})", chunk))
        generation = {i: g for i, g in generation.items() if i in datasets}
        edges = tuple(sorted(e for e in up_edges | down_edges
                             if e[0] in datasets and e[1] in datasets))
        own = conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE dataset_id = ? "  # noqa: S608
            "ORDER BY started_at DESC, id DESC LIMIT ?", [ds_id, max_runs]).fetchall()
        run_ids = sorted({r for _, _, r in edges if r} | (
            {dataset.run_id} if dataset.run_id else set()))
        linked: list = []
        for chunk in _chunks(run_ids):
            marks = ",".join("?" * len(chunk))
            linked += conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id IN ({marks})",  # noqa: S608
                chunk).fetchall()
        own_runs = catalog._runs_from_rows(conn, own)
        runs = {r.id: r for r in catalog._runs_from_rows(conn, linked)}
        runs.update((r.id, r) for r in own_runs)
        marks_ = catalog.frame_marks(ds_id)
    previews = []
    for node in sorted(datasets.values(), key=lambda d: (generation[d.id] != 0,
                                                         generation[d.id] < 0, d.id)):
        if generation[node.id] < 0:
            continue  # an ancestor's images are not this dataset's
        for record in node.files:
            fmt = (record.format or record.path.suffix.lstrip(".")).lower()
            if fmt in IMAGE_FORMATS:
                previews.append(Preview(node.id, record.path, fmt, node.title or node.kind))
    graph = LineageGraph(focus=ds_id, datasets=datasets, runs=runs, edges=edges,
                         generation=generation, truncated=cut_up or cut_down)
    producing = runs.get(dataset.run_id) if dataset.run_id else None
    return DatasetOverview(dataset=dataset, runs=tuple(own_runs), producing_run=producing,
                           lineage=graph, frame_marks=tuple(marks_),
                           previews=tuple(previews))
