"""Searching the catalog: :meth:`Catalog.search`."""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Iterable
from typing import Any

from spotkit.catalog import _pgsearch
from spotkit.catalog._common import (
    _WILDCARD,
    _fts_query,
    _glob_like,
    _glob_regex,
    _tsquery,
)
from spotkit.catalog._core import CatalogCore
from spotkit.catalog._search import SearchResult
from spotkit.catalog._time import to_epoch

logger = logging.getLogger("spotkit.catalog._catalog")


class SearchMixin(CatalogCore):
    """Search for :class:`~spotkit.catalog.Catalog`."""

    # -- search -----------------------------------------------------------------------

    def _match(self, column: str, value: Any, where: list[str], params: list) -> None:
        values = [value] if isinstance(value, str) else list(value)
        if not values:
            where.append("FALSE" if self._pg else "0")
            return
        exact = [v for v in values if not _WILDCARD.search(v)]
        globs = [v for v in values if _WILDCARD.search(v)]
        terms = []
        if len(exact) == 1:
            terms.append(f"{column} = ?")
        elif exact:
            terms.append(f"{column} IN ({','.join('?' * len(exact))})")
        if self._pg:
            # GLOB's meaning on PostgreSQL: LIKE where it can be (an index serves a fixed
            # prefix: text columns compare byte-wise, COLLATE "C"), else a regex
            likes = [_glob_like(g) for g in globs]
            terms += [f"{column} LIKE ? ESCAPE '\\'" if like is not None else f"{column} ~ ?"
                      for like in likes]
            globs = [like if like is not None else _glob_regex(g)
                     for like, g in zip(likes, globs, strict=True)]
        else:
            terms += [f"{column} GLOB ?"] * len(globs)
        params += exact + globs
        where.append(terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")")

    def _where(self, **query: Any) -> tuple[str, list]:
        where: list[str] = []
        params: list = []
        for column in ("beamline", "sample", "proposal", "kind", "status"):
            value = query.get(column)
            if value is not None:
                self._match(f"d.{column}", value, where, params)
        since = to_epoch(query.get("since"), name="since")
        until = to_epoch(query.get("until"), name="until", end_of_day=True)
        if since is not None:
            where.append("d.start_time >= ?")
            params.append(since)
        if until is not None:
            date_only = isinstance(query["until"], _dt.date) and not isinstance(
                query["until"], _dt.datetime
            )
            date_only |= isinstance(query["until"], str) and len(query["until"].strip()) == 10
            where.append("d.start_time < ?" if date_only else "d.start_time <= ?")
            params.append(until)
        text = query.get("text")
        if text:
            if self._pg:
                match = _tsquery(text)
                if match:  # the dataset's own tsvector column (schema 7)
                    where.append("d.doc @@ to_tsquery('simple', ?)")
                    params.append(match)
            elif self._fts:
                match = _fts_query(text)
                if match:
                    where.append(
                        "d.seq IN (SELECT rowid FROM datasets_fts WHERE datasets_fts MATCH ?)"
                    )
                    params.append(match)
            else:
                for word in text.split():
                    like = "%" + word.strip("*").replace("\\", "\\\\").replace("%", "\\%")
                    like = like.replace("_", "\\_") + "%"
                    cols = ("d.title", "d.sample", "d.proposal", "d.beamline", "d.metadata")
                    where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in cols) + ")")
                    params += [like] * len(cols)
        return ("WHERE " + " AND ".join(where)) if where else "", params

    def search(
        self,
        *,
        beamline: str | Iterable[str] | None = None,
        sample: str | Iterable[str] | None = None,
        proposal: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        since: Any = None,
        until: Any = None,
        text: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        exact_total: bool = False,
    ) -> SearchResult:
        """Find datasets, newest first (by start time).

        All given criteria must hold. A string field matches exactly, or as a GLOB pattern
        if it contains ``*``, ``?`` or ``[`` (case-sensitive: ``sample="lyso*"``); a list
        matches any of its values.

        Parameters
        ----------
        beamline, sample, proposal, kind, status : str or list of str, optional
            Field values or patterns.
        since, until : datetime, date or ISO 8601 string, optional
            Start-time range, both ends included; ``until`` as a bare date includes that
            whole day. Naive times are UTC.
        text : str, optional
            Free text over title, sample, proposal, beamline and metadata values; every
            word must occur (whole words, or a prefix with a trailing ``*``).
        limit : int or None, optional
            Page size (``None``: all matches).
        offset : int, optional
            Number of matches to skip.
        exact_total : bool, optional
            Count every match even when there are many. By default a PostgreSQL catalog
            counts matches exactly up to :data:`EXACT_TOTAL_UP_TO` (10,000) and above that
            gives the database planner's estimate (``SearchResult.total_exact`` is then
            False): counting hundreds of thousands of matches takes longer than finding
            the page. A SQLite catalog always counts exactly.

        Returns
        -------
        SearchResult
            The page, with ``total`` the number of all matches (exact, or an estimate
            above :data:`EXACT_TOTAL_UP_TO` where ``total_exact`` is False).

        Examples
        --------
        >>> import pathlib, tempfile
        >>> from spotkit.catalog import open_catalog
        >>> from spotkit.sim import simulate_tomo_scan
        >>> work = pathlib.Path(tempfile.mkdtemp())
        >>> _ = simulate_tomo_scan(work / "scan_0001.h5", shape=(32, 2, 32), seed=0)
        >>> cat = open_catalog(work / "catalog.db")
        >>> raw = cat.ingest(work / "scan_0001.h5")
        >>> hits = cat.search(beamline="8.3.2", sample="sim*", since="2024-01-01")
        >>> [d.id for d in hits] == [raw.id]
        True
        """
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a non-negative integer, not {offset!r}")
        query = {
            k: v
            for k, v in dict(
                beamline=beamline, sample=sample, proposal=proposal, kind=kind, status=status,
                since=since, until=until, text=text,
            ).items()
            if v is not None
        }  # fmt: skip
        where, params = self._where(**query)
        order = f"ORDER BY {self._newest_first}"
        with self._read() as conn:
            source = "datasets d"
            fts_total = None
            match = _fts_query(text) if text and self._fts and not self._pg else ""
            if match and set(query) <= {"text", "since", "until"}:
                # Free text (and time) only. For a common word, walking the start-time index
                # newest first until the page is full beats reading every match's row to
                # sort them (~10 ms instead of ~100 ms for 5 % of 1e6 rows); for a rare word
                # it is the other way round. The FTS index counts the matches cheaply.
                fts_total = conn.execute(
                    "SELECT count(*) FROM datasets_fts WHERE datasets_fts MATCH ?", (match,)
                ).fetchone()[0]
                rows = conn.execute("SELECT max(seq) FROM datasets").fetchone()[0] or 0
                wanted = offset + (limit if limit is not None else fts_total)
                if fts_total and wanted * rows / fts_total < 20 * fts_total:
                    source = "datasets d INDEXED BY datasets_start"
            # Pick the page's rows by (start_time, seq) first -- from an index alone when
            # the criteria allow -- and only then read the full rows: sorting many full
            # rows made broad queries (sample="lyso*") ten times slower.
            page = f"SELECT d.seq FROM {source} {where} {order}"  # noqa: S608
            page_params = list(params)
            if limit is not None or offset:
                page += " LIMIT ? OFFSET ?"
                # no limit: -1 on SQLite, NULL (LIMIT ALL) on PostgreSQL
                no_limit = None if self._pg else -1
                page_params += [no_limit if limit is None else limit, offset]
            words = [w for w in map(_tsquery, text.split()) if w] if self._pg and text else []
            walk = counted = None
            if words and limit:  # free text on PostgreSQL: see _pgsearch
                others = self._where(**{k: v for k, v in query.items() if k != "text"})
                walk = _pgsearch.text_page(conn, fields=others, words=words, order=order,
                                           want=offset + limit)
                if walk is not None:
                    seqs = walk[0][offset:]
                else:
                    seqs, counted = _pgsearch.counted_page(conn, where, params, order=order,
                                                           limit=limit, offset=offset)
                marks = ",".join("?" * len(seqs)) or "NULL"
                datasets = self._load(conn, f"WHERE d.seq IN ({marks}) {order}", seqs)
            else:
                datasets = self._load(conn, f"WHERE d.seq IN ({page}) {order}", page_params)
            exact = True
            if limit is None or (len(datasets) < limit and (datasets or offset == 0)):
                total = offset + len(datasets)
            elif counted is not None:
                total = counted
            elif fts_total is not None and set(query) == {"text"}:
                total = fts_total
            elif self._pg and not exact_total:
                total, exact = _pgsearch.total(
                    conn, where, params, seen=offset + len(datasets),
                    estimate=None if walk is None else walk[1], text=bool(words),
                    sampled=walk is not None)
            else:
                total = conn.execute(
                    f"SELECT count(*) FROM {source} {where}",  # noqa: S608
                    params,
                ).fetchone()[0]
        return SearchResult(datasets, total=total, offset=offset, limit=limit, query=query,
                            total_exact=exact)



