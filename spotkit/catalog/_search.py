"""The result of a catalog search: one page of datasets and the total count."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any, overload

from spotkit.catalog._dataset import Dataset

__all__ = ["EXACT_TOTAL_UP_TO", "SearchResult"]

#: A PostgreSQL catalog counts a search's matches exactly up to this many and estimates
#: above (as Elasticsearch's ``track_total_hits`` and Tiled's ``exact_count_limit`` do):
#: PostgreSQL has no stored row counts, so an exact count reads every match (430,000
#: index entries for one beamline of a 10-million catalog: ~0.1-0.5 s, free text 1-4 s).
EXACT_TOTAL_UP_TO = 10_000

_COLUMNS = ("id", "kind", "beamline", "sample", "proposal", "start_time", "status", "title")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def _about(n: int) -> str:
    """An estimated count in words, to two significant digits."""
    if n <= EXACT_TOTAL_UP_TO + 1:
        return f"more than {EXACT_TOTAL_UP_TO:,}"
    if n >= 999_500:
        return f"about {float(f'{n / 1e6:.2g}'):g} million"
    return f"about {int(float(f'{n:.2g}')):,}"


class SearchResult(Sequence[Dataset]):
    """One page of datasets matching a search, newest first, with the total match count.

    Attributes
    ----------
    total : int
        Number of datasets matching the query (all pages): exact, or on a PostgreSQL
        catalog above 10,000 matches an estimate (then ``total_exact`` is False; ask
        ``search(..., exact_total=True)`` for the exact count).
    total_exact : bool
        Whether ``total`` is an exact count.
    offset, limit : int
        Where this page starts and its maximum size (``limit`` is ``None`` for all).
    query : dict
        The search arguments that produced it.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_tomo_scan
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(work / "scan_0001.h5", shape=(32, 2, 32), seed=0)
    >>> cat = open_catalog(work / "catalog.db")
    >>> _ = cat.ingest(work / "scan_0001.h5")
    >>> hits = cat.search(beamline="8.3.2", since="2024-01-01", limit=100)
    >>> hits.total, len(hits)
    (1, 1)
    >>> hits[0].to_dask().shape
    (32, 2, 32)
    """

    def __init__(
        self,
        datasets: Sequence[Dataset],
        *,
        total: int,
        offset: int = 0,
        limit: int | None = None,
        query: dict | None = None,
        total_exact: bool = True,
    ):
        self._datasets = tuple(datasets)
        self.total = total
        self.total_exact = total_exact
        self.offset = offset
        self.limit = limit
        self.query = dict(query or {})

    def __len__(self) -> int:
        return len(self._datasets)

    @overload
    def __getitem__(self, index: int) -> Dataset: ...
    @overload
    def __getitem__(self, index: slice) -> list[Dataset]: ...
    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(self._datasets[index])
        return self._datasets[index]

    def __iter__(self):
        return iter(self._datasets)

    @property
    def ids(self) -> list[str]:
        """Ids of the datasets on this page."""
        return [ds.id for ds in self._datasets]

    def to_records(self) -> list[dict[str, Any]]:
        """Return the page as a list of flat dicts (e.g. for ``pandas.DataFrame``).

        Keys: id, kind, beamline, sample, proposal, title, start_time, end_time (aware
        datetimes), status, path (str of the primary file) and metadata (dict).
        """
        return [
            {
                "id": ds.id,
                "kind": ds.kind,
                "beamline": ds.beamline,
                "sample": ds.sample,
                "proposal": ds.proposal,
                "title": ds.title,
                "start_time": ds.start_time,
                "end_time": ds.end_time,
                "status": ds.status,
                "path": str(ds.path) if ds.path else None,
                "metadata": dict(ds.metadata),
            }
            for ds in self._datasets
        ]

    @property
    def total_text(self) -> str:
        """The total for people: ``"1,234"`` when exact, else ``"about 430,000"``,
        ``"about 1.2 million"`` (or ``"more than 10,000"`` when the estimate is not above
        the counted threshold).

        Examples
        --------
        >>> SearchResult([], total=1234).total_text
        '1,234'
        >>> SearchResult([], total=1_234_567, total_exact=False).total_text
        'about 1.2 million'
        """
        return f"{self.total:,}" if self.total_exact else _about(self.total)

    def _header(self) -> str:
        first = self.offset + 1 if self._datasets else self.offset
        return (f"{len(self)} of {self.total_text} datasets "
                f"(#{first}–{self.offset + len(self)})")

    def __repr__(self) -> str:
        rows = [[_cell(getattr(ds, c)) for c in _COLUMNS] for ds in self._datasets]
        widths = [
            min(40, max([len(c)] + [len(r[i]) for r in rows])) for i, c in enumerate(_COLUMNS)
        ]

        def line(cells):
            return "  ".join(c[:w].ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        out = [f"<SearchResult: {self._header()}>"]
        if rows:
            out += [line(_COLUMNS), line("-" * w for w in widths)]
            out += [line(r) for r in rows]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(f"<th style='text-align:left'>{esc(c)}</th>" for c in _COLUMNS)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td style='text-align:left'>{esc(_cell(getattr(ds, c)))}</td>" for c in _COLUMNS
            )
            + "</tr>"
            for ds in self._datasets
        )
        return (
            f"<div><small>{esc(self._header())}</small>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )
