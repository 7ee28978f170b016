"""The Data panel without widgets: search, keyset paging and the selected dataset.

:class:`DataPanelModel` holds what a person asked for (the search, the page, the selected
dataset) and turns it into catalog reads in :meth:`DataPanelModel.fetch`: at most ONE
library call per fetch (:func:`spotkit.catalog.search_page` for a page, with its count;
:func:`spotkit.catalog.dataset_overview` for the selected dataset), never a query per row.
Pages are found by key (keyset paging): the model remembers the key of every row it has
shown (:class:`spotkit.catalog.PageKey`) and reaches a page from the nearest known row,
from the first row or from the last one, skipping only the rows in between, so a page deep
in a million datasets costs about what the first one does. It imports no ipywidgets and is
tested in plain Python; :mod:`spotkit.widgets._portal_data` draws it.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from spotkit.catalog import PageKey, SearchResult, dataset_overview, search_page
from spotkit.errors import SpotkitError
from spotkit.widgets._portal_data_detail import DatasetDetail, describe, find_lab_root
from spotkit.widgets._portal_data_remote import describe_remote, is_local, remote_page

logger = logging.getLogger(__name__)

__all__ = ["COLUMNS", "SEARCH_FIELDS", "DataPanelModel", "DataSnapshot", "GridPage"]

#: The search form's fields, as :meth:`spotkit.catalog.Catalog.search` names them.
SEARCH_FIELDS = ("beamline", "proposal", "sample", "kind", "status", "since", "until", "text")

#: The grid's columns: (row key, heading).
COLUMNS = (("id", "dataset"), ("start", "start (UTC)"), ("beamline", "beamline"), ("kind", "kind"),
           ("sample", "sample"), ("proposal", "proposal"), ("status", "status"),
           ("title", "title"))

#: Known keys kept per search (the oldest are forgotten first).
MAX_ANCHORS = 4096
#: Page sizes the panel offers.
PAGE_SIZES = (10, 25, 50, 100)


@dataclass(frozen=True)
class GridPage:
    """One page of the grid, ready to draw.

    Attributes
    ----------
    rows : tuple of dict
        One per dataset, keyed by :data:`COLUMNS` (strings).
    page : int
        0-based page number.
    first : int
        0-based position of the first row among all matches.
    total : int or None
        Number of matches (an estimate where ``total_exact`` is False).
    total_exact : bool
    total_text : str
        The total for people (``"1,234"``, ``"about 1.2 million"``).
    pages : int or None
        Number of pages.
    at_end : bool
        No matches after this page.
    query : dict
        The search criteria.
    """

    rows: tuple[dict[str, str], ...]
    page: int
    first: int
    total: int | None
    total_exact: bool
    total_text: str
    pages: int | None
    at_end: bool
    query: dict

    @property
    def ids(self) -> list[str]:
        """The datasets' ids, in the grid's order."""
        return [r["id"] for r in self.rows]

    @property
    def range_text(self) -> str:
        """``"26–50 of 1,000,000 datasets"``."""
        if not self.rows:
            return f"no datasets (of {self.total_text})" if self.first else "no datasets"
        noun = "dataset" if self.total == 1 and self.total_exact else "datasets"
        return (f"{self.first + 1:,}–{self.first + len(self.rows):,} of {self.total_text} "
                f"{noun}")


@dataclass(frozen=True)
class DataSnapshot:
    """What one fetch found: the page, the selected dataset's detail, an error.

    A snapshot always carries the newest page and detail the model has (a fetch reads one
    of them; the other is the last one read), so drawing it shows everything.
    """

    page: GridPage | None
    detail: DatasetDetail | None
    selected: str | None
    error: str | None = None
    pending: bool = False  # another fetch is wanted now (e.g. the detail after a search)
    seconds: float = 0.0   # how long this fetch's catalog call took
    did: str = ""          # "page", "detail" or "" (nothing to do)
    notes: tuple[str, ...] = field(default_factory=tuple)


def _cell_time(value: _dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def _row(ds) -> dict[str, str]:
    return {"id": ds.id, "start": _cell_time(ds.start_time), "beamline": ds.beamline or "",
            "kind": ds.kind, "sample": ds.sample or "", "proposal": ds.proposal or "",
            "status": ds.status, "title": ds.title or ""}


def parse_form(**form: Any) -> dict[str, Any]:
    """The search criteria from the form's values: blanks dropped, text stripped, dates
    checked (ISO ``YYYY-MM-DD``, a date or a datetime).

    Raises
    ------
    ValueError
        An unknown field (the message lists the fields) or a date that is not ISO 8601.

    Examples
    --------
    >>> parse_form(beamline=" 8.3.2 ", sample="lyso*", since="2024-05-01", text="")
    {'beamline': '8.3.2', 'sample': 'lyso*', 'since': '2024-05-01'}
    """
    unknown = sorted(set(form) - set(SEARCH_FIELDS))
    if unknown:
        raise ValueError(f"unknown search field(s) {unknown}; the fields are "
                         f"{list(SEARCH_FIELDS)}")
    out: dict[str, Any] = {}
    for name in SEARCH_FIELDS:
        value = form.get(name)
        if isinstance(value, str):
            value = value.strip()
        if value in (None, ""):
            continue
        if name in ("since", "until"):
            if isinstance(value, str):
                try:
                    (_dt.date if len(value) == 10 else _dt.datetime).fromisoformat(value)
                except ValueError:
                    raise ValueError(f"{name} {value!r} is not a date; write it as "
                                     "YYYY-MM-DD (e.g. 2024-05-01)") from None
            elif not isinstance(value, _dt.date):
                raise ValueError(f"{name} must be a date or YYYY-MM-DD text, not {value!r}")
        out[name] = value
    since, until = out.get("since"), out.get("until")
    if since is not None and until is not None and str(since)[:10] > str(until)[:10]:
        raise ValueError(f"since ({since}) is after until ({until}); swap them")
    return out


class DataPanelModel:
    """Search, page and inspect the catalog in plain Python (the Data panel's model).

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
    page_size : int, optional
        Rows per page (one of :data:`PAGE_SIZES` in the panel; any 1-1000 here).
    lab : (str or None, str), optional
        The Jupyter server's root folder and base URL for the links to executed notebooks
        (default: found on the first detail fetch, see :func:`find_lab_root`); ``(None,
        "/")`` for no links.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.widgets._portal_data_model import DataPanelModel
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> _ = cat.bulk_load({"kind": "tomo/raw", "beamline": "8.3.2", "sample": f"bone-{i}",
    ...                    "start_time": 1.7e9 + i} for i in range(30))
    >>> model = DataPanelModel(cat, page_size=10)
    >>> model.search(sample="bone-2*")
    >>> snap = model.fetch()                      # one catalog call: the first page
    >>> snap.page.range_text, snap.page.rows[0]["sample"]
    ('1–10 of 11 datasets', 'bone-29')
    >>> model.last_page()
    >>> model.fetch().page.range_text
    '11–11 of 11 datasets'
    >>> model.select(model.page.ids[0])
    >>> model.fetch().detail.fields[4]
    ('sample', 'bone-2')
    """

    def __init__(self, catalog, *, page_size: int = 25,
                 lab: tuple[str | None, str] | None = None):
        self.catalog = catalog
        self._local = is_local(catalog)  # else a spotkit serve catalog: offset paging
        self._check_size(page_size)
        self.page_size = page_size
        self._lab = lab
        self._lock = threading.RLock()      # state, between the kernel and fetch threads
        self._fetching = threading.Lock()   # one fetch at a time
        self.query: dict[str, Any] = {}
        self.page_index = 0
        self.selected: str | None = None
        self._generation = 0                # bumped by every new search
        self._anchors: OrderedDict[int, PageKey] = OrderedDict()
        self._origin = "top"                # where the known rows' positions count from
        self._total: int | None = None
        self._exact = True
        self._want_page = True              # the next fetch reads the page
        self._want_detail = False           # ... or the selected dataset
        self._last_was_page = False         # periodic refreshes alternate
        self.page: GridPage | None = None
        self.detail: DatasetDetail | None = None
        self.error: str | None = None
        self._page_keys: tuple[PageKey, ...] = ()
        self._images: dict = {}  # preview bytes, by (path, mtime, size)
        #: the exception behind the last failed fetch (its text is ``DataSnapshot.error``)
        self.last_exception: BaseException | None = None

    @staticmethod
    def _check_size(size: Any) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 1000:
            raise ValueError(f"page_size must be an integer from 1 to 1000, not {size!r}")

    # -- what the person asks for (no I/O: the next fetch reads) ------------------------

    def search(self, **form: Any) -> None:
        """Search with these form values (see :func:`parse_form`); the first page is read
        by the next fetch. A bad value raises ValueError at once and changes nothing."""
        query = parse_form(**form)
        with self._lock:
            self.query = query
            self._generation += 1
            self._anchors.clear()
            self._origin = "top"
            self._total, self._exact = None, True
            self.page_index = 0
            self._want_page = True

    def set_page_size(self, size: int) -> None:
        """Show ``size`` rows a page, keeping the first shown row on the new page."""
        self._check_size(size)
        with self._lock:
            if self.page_index >= 0:  # (-1: the last page, whatever its size)
                self.page_index = self.page_index * self.page_size // size
            self.page_size = size
            self._want_page = True

    def go(self, page: int) -> None:
        """Show page ``page`` (0-based; clipped to the pages there are)."""
        with self._lock:
            page = max(0, int(page))
            if self._total is not None and self._exact:
                page = min(page, max(0, (self._total - 1) // self.page_size))
            self.page_index = page
            self._want_page = True

    def first_page(self) -> None:
        self.go(0)

    def next_page(self) -> None:
        with self._lock:
            if self.page is None or not self.page.at_end:
                self.go(self.page_index + 1)

    def previous_page(self) -> None:
        self.go(self.page_index - 1)

    def last_page(self) -> None:
        """Show the last page (read from the oldest end: no skipping)."""
        with self._lock:
            self.page_index = -1  # resolved by the fetch, which knows the total
            self._want_page = True

    def select(self, dataset_id: str | None) -> None:
        """Show this dataset's detail (read by the next fetch); ``None`` clears it."""
        with self._lock:
            self.selected = dataset_id
            self._want_detail = dataset_id is not None
            if dataset_id is None:
                self.detail = None

    @property
    def wants_fetch(self) -> bool:
        """Whether something asked for is not read yet."""
        with self._lock:
            return self._want_page or self._want_detail

    # -- reading (the background thread) -------------------------------------------------

    def fetch(self) -> DataSnapshot:
        """Read what is wanted, with at most one catalog call, and return a snapshot.

        The new page or search first, else the selected dataset's detail; with nothing
        asked, a periodic refresh re-reads the shown page and the detail in turn (the
        page from its first row, so rows do not jump when new datasets arrive). A failing
        catalog does not raise: the snapshot carries the error and the last data.
        """
        with self._fetching:
            with self._lock:
                do_page = self._want_page or (not self._want_detail and (
                    self.selected is None or not self._last_was_page))
                if self.page is None:
                    do_page = True
                self._last_was_page = do_page
            t0 = time.perf_counter()
            notes: list[str] = []
            try:
                if do_page:
                    self._read_page(notes)
                else:
                    self._read_detail()
                error = None
            except (SpotkitError, OSError, ValueError) as exc:
                self.last_exception = exc
                error = f"{type(exc).__name__}: {exc}"
                logger.warning("data panel: reading the catalog failed: %s", error)
            seconds = time.perf_counter() - t0
            with self._lock:
                self.error = error
                # after an error the next refresh tries again (not at once: no tight loop)
                if error is not None and do_page:
                    self._want_page = True
                elif error is not None:
                    self._want_detail = self.selected is not None
                return DataSnapshot(page=self.page, detail=self.detail,
                                    selected=self.selected, error=error,
                                    pending=error is None and (self._want_page
                                                               or self._want_detail),
                                    seconds=seconds, did="page" if do_page else "detail",
                                    notes=tuple(notes))

    def _plan(self, index: int, size: int, total: int | None, exact: bool) -> dict[str, Any]:
        """How to read the page at row ``index``: the cheapest start among the first row,
        the last row and every known key (fewest rows skipped)."""
        if index == 0:
            return {}
        options: list[tuple[int, dict[str, Any]]] = [(index, {"skip": index})]
        if total is not None and exact:
            end = total - (index + size)  # rows after the page
            if end >= 0:
                options.append((end, {"last": True, "skip": end}))
            else:  # the last page, partial
                options.append((0, {"last": True, "limit": max(1, total - index)}))
        known = sorted(self._anchors)
        i = bisect.bisect_left(known, index)
        if i and known[i - 1] < index:  # the nearest known row above the page
            pos = known[i - 1]
            options.append((index - pos - 1, {"after": self._anchors[pos],
                                              "skip": index - pos - 1}))
        if i < len(known) and known[i] == index:
            options.append((0, {"at": self._anchors[index]}))
        j = bisect.bisect_left(known, index + size)
        if j < len(known):  # the nearest known row below the page
            pos = known[j]
            options.append((pos - index - size, {"before": self._anchors[pos],
                                                 "skip": pos - index - size}))
        return min(options, key=lambda o: o[0])[1]

    def _read_page(self, notes: list[str]) -> None:
        with self._lock:
            query, size, generation = dict(self.query), self.page_size, self._generation
            index = self.page_index * size
            total, exact = self._total, self._exact
            refresh = not self._want_page and self.page is not None
            first_key = self._page_keys[0] if self._page_keys else None
            self._want_page = False
            want_last = self.page_index == -1
            if want_last:  # the last page
                plan: dict[str, Any] = {"last": True}
                if total is not None and exact:
                    index = max(0, (total - 1) // size * size)
                    plan["limit"] = max(1, total - index)
            elif refresh and index and first_key is not None:
                plan = {"at": first_key}  # the same rows, fresh
            else:
                plan = self._plan(index, size, total, exact)
        if not self._local:
            self._read_remote_page(query, size, generation, index, total, last=want_last)
            return
        # count on a new search and on refreshes (data may have come); a move to another
        # page of the same search keeps the count it has
        count = total is None or refresh
        kwargs = {"limit": size, **plan}  # (the last page's plan has its own limit)
        result = search_page(self.catalog, count=count, **kwargs, **query)
        with self._lock:
            if generation != self._generation:
                self._want_page = True  # a new search came in meanwhile: read again
                return
            new_total, new_exact = ((result.total, result.total_exact) if count
                                    else (total, exact))
            if self.page_index == -1:  # the last page: its rows counted from the end
                n = len(result)
                if new_total and new_exact:
                    index = (new_total - 1) // size * size
                    if new_total - index != n:  # the count changed since: read it again
                        self._want_page = True
                        index = max(0, new_total - n) // size * size
                    else:
                        self.page_index = index // size
                else:  # no count, or an estimate: the nearest page start will do
                    index = max(0, (new_total or n) - n) // size * size
                    self.page_index = index // size
            if refresh and total is not None and new_total is not None and new_total > total:
                notes.append(f"{new_total - total:,} new dataset(s) since the last refresh")
                if index == 0:
                    self._anchors.clear()  # rows moved down: the known positions are old
            self._total, self._exact = new_total, new_exact
            # with an estimated total, rows counted from the end have estimated positions:
            # keep the known rows of one end at a time, so a page is never placed by the
            # other end's reckoning
            origin = "end" if plan.get("last") else "top" if not plan else self._origin
            if not new_exact and origin != self._origin:
                self._anchors.clear()
            self._origin = origin
            for i, key in enumerate(result.keys):
                self._anchors[index + i] = key
                self._anchors.move_to_end(index + i)
            while len(self._anchors) > MAX_ANCHORS:
                self._anchors.popitem(last=False)
            self._page_keys = tuple(result.keys)
            pages = None
            if new_total is not None:
                pages = max(1, -(-new_total // size))
            total_text = SearchResult([], total=new_total or 0,
                                      total_exact=new_exact).total_text
            at_end = (result.more_after is False) or (
                new_total is not None and new_exact and index + len(result) >= new_total)
            self.page = GridPage(rows=tuple(_row(d) for d in result), page=index // size,
                                 first=index, total=new_total, total_exact=new_exact,
                                 total_text=total_text, pages=pages, at_end=at_end,
                                 query=query)

    def _read_remote_page(self, query: dict, size: int, generation: int, index: int,
                          total: int | None, *, last: bool) -> None:
        """A remote catalog (``spotkit serve``) pages by offset, on the server."""
        datasets, new_total, index = remote_page(self.catalog, query, index=index,
                                                 size=size, last=last, total=total)
        with self._lock:
            if generation != self._generation:
                self._want_page = True
                return
            self._total, self._exact = new_total, True
            self.page_index = index // size
            self.page = GridPage(rows=tuple(_row(d) for d in datasets), page=index // size,
                                 first=index, total=new_total, total_exact=True,
                                 total_text=f"{new_total:,}",
                                 pages=max(1, -(-new_total // size)),
                                 at_end=index + len(datasets) >= new_total, query=query)

    def _read_detail(self) -> None:
        with self._lock:
            wanted = self.selected
            self._want_detail = False
        if wanted is None:
            return
        if not self._local:
            detail = describe_remote(self.catalog[wanted])
            with self._lock:
                if self.selected == wanted:
                    self.detail = detail
            return
        if self._lab is None:
            self._lab = find_lab_root()
        view = dataset_overview(self.catalog, wanted)
        detail = describe(view, lab=self._lab, cache=self._images)
        with self._lock:
            if self.selected == wanted:
                self.detail = detail
