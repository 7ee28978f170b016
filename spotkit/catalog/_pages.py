"""Keyset paging over a search: :func:`search_page`, for a grid over millions of datasets.

``Catalog.search(offset=...)`` skips ``offset`` matches on every call, so a page deep in a
big result costs time in proportion to its depth (the database walks every skipped index
entry). A grid that scrolls page by page instead remembers where a page ends -- the
:class:`PageKey` of its last row, i.e. its place in the catalog's order (start time newest
first, datasets without a start time last, ties broken by the registration number) -- and
asks for the rows *after* that key: the database seeks to the key in the same
(field, start_time) index that serves the search and reads one page. The last page is read
from the other end of the same index, and a jump to a page near a known key skips only the
few rows between them.

The order and the criteria are exactly those of :meth:`Catalog.search`, on SQLite and on
PostgreSQL, so ``search_page`` pages through the same datasets as ``search`` would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from spotkit.catalog._dataset import Dataset

if TYPE_CHECKING:
    from spotkit.catalog._catalog import Catalog

__all__ = ["DatasetPage", "PageKey", "search_page"]

_CRITERIA = ("beamline", "sample", "proposal", "kind", "status", "since", "until", "text")


@dataclass(frozen=True, order=True)
class PageKey:
    """A dataset's place in the catalog's search order (newest first).

    Attributes
    ----------
    start : float or None
        Its start time in UTC epoch seconds (``None``: no start time; such datasets
        come last).
    seq : int
        Its registration number in the catalog (breaks ties between equal start times;
        the newer registration comes first).

    Examples
    --------
    >>> key = PageKey(1714565000.0, 42)
    >>> PageKey.parse(key.token) == key
    True
    >>> PageKey.parse("none:7")
    PageKey(start=None, seq=7)
    """

    start: float | None
    seq: int

    @property
    def token(self) -> str:
        """The key as a short string (for a URL or a widget's state); see :meth:`parse`."""
        return f"{'none' if self.start is None else repr(float(self.start))}:{self.seq}"

    @classmethod
    def parse(cls, token: str) -> PageKey:
        """The key written by :attr:`token`.

        Raises
        ------
        ValueError
            If ``token`` is not ``"<epoch seconds or none>:<integer>"``.
        """
        try:
            start, seq = str(token).rsplit(":", 1)
            return cls(None if start == "none" else float(start), int(seq))
        except ValueError:
            raise ValueError(
                f"page key {token!r} is not valid; it looks like '1714565000.0:42' "
                "(start time in epoch seconds or 'none', then the registration number)"
            ) from None


@dataclass(frozen=True)
class DatasetPage(Sequence[Dataset]):
    """One page of a search, newest first, with each row's :class:`PageKey`.

    Attributes
    ----------
    datasets : tuple of Dataset
        The page's rows, in the catalog's search order.
    keys : tuple of PageKey
        Each row's key (pass ``keys[-1]`` as ``after=`` for the next page, ``keys[0]`` as
        ``before=`` for the previous one).
    more_after, more_before : bool or None
        Whether there are matches after the last row / before the first row (``None``:
        not looked at: the page was read in the other direction).
    total : int or None
        The number of all matches when asked for (``count=True``), else ``None``.
    total_exact : bool
        Whether ``total`` is exact (a PostgreSQL catalog estimates above 10,000 matches;
        see :meth:`Catalog.search`).
    query : dict
        The search criteria.
    """

    datasets: tuple[Dataset, ...]
    keys: tuple[PageKey, ...]
    more_after: bool | None = None
    more_before: bool | None = None
    total: int | None = None
    total_exact: bool = True
    query: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.datasets)

    @overload
    def __getitem__(self, index: int) -> Dataset: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Dataset]: ...
    def __getitem__(self, index):
        return self.datasets[index]

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self.datasets)

    @property
    def ids(self) -> list[str]:
        """Ids of the datasets on this page."""
        return [ds.id for ds in self.datasets]


def _check(limit: Any, skip: Any) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= 10_000:
        raise ValueError(f"limit must be an integer from 1 to 10000, not {limit!r}")
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
        raise ValueError(f"skip must be a non-negative integer, not {skip!r}")


def _key_of(value: Any, name: str) -> PageKey | None:
    if value is None or isinstance(value, PageKey):
        return value
    if isinstance(value, str):
        return PageKey.parse(value)
    raise TypeError(f"{name} must be a PageKey or its token string, not {type(value).__name__}")


def _segments(pg: bool, key: PageKey | None, forward: bool, inclusive: bool):
    """The runs of rows, in walking order, that follow ``key``: ``(condition, params,
    order)`` each. Rows with a start time and rows without one are separate runs, each a
    plain range of one index, so the database reads them in order without sorting."""
    nulls_last = " NULLS LAST" if pg else ""
    nulls_first = " NULLS FIRST" if pg else ""
    timed_desc = f"d.start_time DESC{nulls_last}, d.seq DESC"
    timed_asc = f"d.start_time ASC{nulls_first}, d.seq ASC"
    eq = "=" if inclusive else ""
    if key is None:  # from one end: one run over everything, the search's own order
        return [("", [], timed_desc if forward else timed_asc)]
    if forward:
        if key.start is None:
            return [(f"d.start_time IS NULL AND d.seq <{eq} ?", [key.seq], "d.seq DESC")]
        return [
            (f"d.start_time <= ? AND (d.start_time < ? OR d.seq <{eq} ?)",
             [key.start, key.start, key.seq], timed_desc),
            ("d.start_time IS NULL", [], "d.seq DESC"),
        ]
    if key.start is None:
        return [
            (f"d.start_time IS NULL AND d.seq >{eq} ?", [key.seq], "d.seq ASC"),
            ("d.start_time IS NOT NULL", [], timed_asc),
        ]
    return [(f"d.start_time >= ? AND (d.start_time > ? OR d.seq >{eq} ?)",
             [key.start, key.start, key.seq], timed_asc)]


def _source(catalog: Catalog, conn: Any, query: dict, wanted: int) -> tuple[str, int | None]:
    """``datasets d``, or on SQLite for free text (and times) only, when the words are
    common, the start-time index walked in order (as :meth:`Catalog.search` does: checking
    each row against the matches beats sorting tens of thousands of matches); and the
    number of free-text matches where it was counted (else None)."""
    from spotkit.catalog._common import _fts_query

    text = query.get("text")
    if catalog._pg or not catalog._fts or not text or not set(query) <= {
            "text", "since", "until"}:
        return "datasets d", None
    match = _fts_query(text)
    if not match:
        return "datasets d", None
    hits = conn.execute("SELECT count(*) FROM datasets_fts WHERE datasets_fts MATCH ?",
                        (match,)).fetchone()[0]
    rows = conn.execute("SELECT max(seq) FROM datasets").fetchone()[0] or 0
    if hits and wanted * rows / hits < 20 * hits:
        return "datasets d INDEXED BY datasets_start", hits
    return "datasets d", hits


def search_page(
    catalog: Catalog,
    *,
    after: PageKey | str | None = None,
    before: PageKey | str | None = None,
    at: PageKey | str | None = None,
    last: bool = False,
    skip: int = 0,
    limit: int = 50,
    count: bool = False,
    **criteria: Any,
) -> DatasetPage:
    """One page of a search, found by key instead of by offset (keyset paging).

    The rows and their order are those of :meth:`Catalog.search` with the same criteria
    (newest first); where the page starts is given by a :class:`PageKey` of a row already
    seen, so a page deep in millions of matches costs about what the first page does.

    Parameters
    ----------
    catalog : Catalog
    after : PageKey or str, optional
        The page starts right after this row (the next page: ``after=page.keys[-1]``).
    before : PageKey or str, optional
        The page ends right before this row (the previous page: ``before=page.keys[0]``).
    at : PageKey or str, optional
        The page starts at this row (re-read the same page, e.g. to refresh it).
    last : bool, optional
        The last page (the ``limit`` oldest matches); with none of ``after``, ``before``,
        ``at`` and ``last`` the first page.
    skip : int, optional
        Skip this many rows first, walking away from the key (from the newest match for
        the first page; from the oldest, towards newer ones, for ``before`` and ``last``).
        Only the skipped rows' index entries are read: jump near a known key.
    limit : int, optional
        Rows on the page (1 to 10,000).
    count : bool, optional
        Also count all matches (``DatasetPage.total``), as ``search`` does.
    **criteria
        ``beamline``, ``sample``, ``proposal``, ``kind``, ``status``, ``since``, ``until``
        and ``text``, as for :meth:`Catalog.search` (wildcards, lists of values).

    Returns
    -------
    DatasetPage

    Raises
    ------
    ValueError
        More than one of ``after``, ``before``, ``at`` and ``last``; a bad ``limit`` or
        ``skip``; a malformed key token.
    TypeError
        An unknown criterion (the message lists the known ones).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog, search_page
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> _ = cat.bulk_load({"kind": "tomo/raw", "beamline": "8.3.2", "sample": f"s{i}",
    ...                    "start_time": 1.7e9 + i} for i in range(7))
    >>> first = search_page(cat, beamline="8.3.2", limit=3, count=True)
    >>> [d.sample for d in first], first.total
    (['s6', 's5', 's4'], 7)
    >>> second = search_page(cat, beamline="8.3.2", limit=3, after=first.keys[-1])
    >>> [d.sample for d in second], second.more_after
    (['s3', 's2', 's1'], True)
    >>> [d.sample for d in search_page(cat, beamline="8.3.2", limit=3, last=True)]
    ['s2', 's1', 's0']
    """
    unknown = sorted(set(criteria) - set(_CRITERIA))
    if unknown:
        raise TypeError(f"search_page() got unknown criteria {unknown}; the criteria are "
                        f"{list(_CRITERIA)}")
    _check(limit, skip)
    given = [name for name, value in (("after", after), ("before", before), ("at", at),
                                      ("last", last or None)) if value is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of after, before, at and last, not {given}")
    key = _key_of(after, "after") or _key_of(at, "at") or _key_of(before, "before")
    forward = before is None and not last
    skipped = skip > 0
    query = {k: v for k, v in criteria.items() if v is not None}
    where, params = catalog._where(**query)
    found: list[tuple[int, float | None]] = []
    want = limit + 1  # one more: is there anything beyond the page?
    with catalog._read() as conn:
        source, hits = _source(catalog, conn, query, skip + want)
        for condition, extra, order in _segments(catalog._pg, key, forward, at is not None):
            clause = " AND ".join(c for c in (where[len("WHERE "):], condition) if c)
            filtered = f"FROM {source} {'WHERE ' + clause if clause else ''}"
            got = conn.execute(
                f"SELECT d.seq, d.start_time {filtered} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, *extra, want - len(found), skip]).fetchall()
            found += [(r[0], r[1]) for r in got]
            if len(found) >= want:
                break
            if got or not skip:
                skip = 0
            else:  # the skip reaches past this run of rows: by how many?
                counted = conn.execute(f"SELECT count(*) {filtered}",
                                       [*params, *extra]).fetchone()[0]
                skip = max(0, skip - counted)
        more = len(found) > limit
        found = found[:limit]
        if not forward:
            found.reverse()
        seqs = [r[0] for r in found]
        marks = ",".join("?" * len(seqs)) or "NULL"
        # in the search's order, which is the page's: row i is found[i]
        loaded = catalog._load(conn, f"WHERE d.seq IN ({marks}) ORDER BY "
                               f"{catalog._newest_first}", seqs)
        if len(loaded) != len(found):  # a row was deleted meanwhile: leave it out
            alive = dict(conn.execute(
                f"SELECT seq, id FROM datasets WHERE seq IN ({marks})",  # noqa: S608
                seqs).fetchall())
            found = [r for r in found if r[0] in alive]
    rows = list(zip(found, loaded, strict=False))
    total, exact = None, True
    if count and hits is not None and set(query) == {"text"}:
        total = hits  # the free-text index counted them (as search() counts them)
    elif count:
        counted_result = catalog.search(limit=0, **query)
        total, exact = counted_result.total, counted_result.total_exact
    if forward:
        more_after: bool | None = more
        more_before: bool | None = (True if after is not None or skipped
                                    else None if at is not None else False)
    else:
        more_before = more
        more_after = before is not None or skipped
    return DatasetPage(
        datasets=tuple(ds for _, ds in rows),
        keys=tuple(PageKey(None if k[1] is None else float(k[1]), int(k[0])) for k, _ in rows),
        more_after=more_after, more_before=more_before,
        total=total, total_exact=exact, query=query)
