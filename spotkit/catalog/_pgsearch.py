"""How a PostgreSQL catalog keeps searches fast at millions of datasets.

Two costs grow with the catalog, not with the page of 100 a search returns:

* **The total.** PostgreSQL keeps no row counts: an exact ``count(*)`` reads every match
  (430,000 index entries for one beamline of a 10-million catalog; for free text, every
  matching row). So :func:`total` counts only up to :data:`EXACT_TOTAL_UP_TO` + 1
  (``LIMIT``: the scan stops there) and above that gives an estimate, flagged as one
  (``SearchResult.total_exact``). For free text even that capped count visits up to
  10,001 rows by their GIN bitmap, so where the estimate is far above the threshold (a
  common word) the count is skipped and the estimate stands.
* **The page of free text.** A GIN index finds the matches of a word but not in start-time
  order: the newest 100 of N matches take either every match's row (fine when N is
  small) or a walk down the start-time index checking each row's ``tsvector`` until 100
  match (fine when the words are common: 100 / frequency rows). PostgreSQL's planner
  picks by its estimate of N, which multiplies the words' frequencies, so words that
  occur together (``bone 0421``: the sample bone-0421) look a thousand times rarer than
  they are and get the every-match plan (0.1-1 s at 10 million). :func:`text_page` walks
  first, at most :data:`WALK_ROWS` rows, when the rarest single word is common enough
  for the walk to fill the page, and leaves the rest to the planner
  (:func:`counted_page`), whose plan reads every match anyway and so also counts them.

Measured in benchmarks/bench_catalog_search.py (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import logging
import re
import time
import weakref
from collections.abc import Sequence
from typing import Any

from spotkit.catalog import _search

logger = logging.getLogger("spotkit.catalog._catalog")

#: Free text: an estimate at least this many times :data:`EXACT_TOTAL_UP_TO` is taken
#: without the capped count (which would visit 10,001 matching rows): the planner's
#: estimate (words' frequencies multiplied) ...
TRUST_ESTIMATE_FACTOR = 5
#: ... or one measured by the walk (100 matches in ``w`` rows: about +-10 %)
TRUST_SAMPLED_FACTOR = 2
#: The most rows a free-text search walks newest-first before it leaves the page to the
#: planner (~3 µs a row: ~60 ms at most).
WALK_ROWS = 20_000


def planner_rows(conn: Any, where: str, params: Sequence) -> int:
    """PostgreSQL's estimate of the datasets matching ``where`` (no rows are read)."""
    plan = conn.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM datasets d {where}",  # noqa: S608
                        list(params)).fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


#: How long the word frequencies read from ``pg_stats`` are reused (seconds).
STATS_TTL_S = 300.0
_LEXEME = re.compile(r"'((?:[^']|'')*)'(:\*)?")


class _WordStats:
    """The planner's statistics of ``datasets.doc`` (ANALYZE's most common words and how
    many rows contain each), read once per :data:`STATS_TTL_S` and connection: one query
    instead of an EXPLAIN per word and search."""

    def __init__(self, conn: Any):
        self.read_at = time.monotonic()
        row = conn.execute(
            "SELECT c.reltuples, s.most_common_elems::text::text[], s.most_common_elem_freqs "
            "FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_stats s "
            "ON s.tablename = 'datasets' AND s.attname = 'doc' "
            "AND s.schemaname = ANY (current_schemas(false)) "
            "WHERE c.oid = to_regclass('datasets')").fetchone()
        self.rows = float(row[0]) if row and row[0] and row[0] > 0 else None
        elems, freqs = (row[1], row[2]) if row else (None, None)
        self.freq: dict[str, float] = {}
        self.floor = None  # every word not listed is in fewer rows than this
        if elems and freqs and len(freqs) > len(elems):
            self.freq = dict(zip(elems, freqs[:len(elems)], strict=True))
            self.floor = float(freqs[len(elems)])

    def word_share(self, tsquery: str) -> float | None:
        """The largest share of rows one user word (its tsquery) can match: that of its
        rarest whole part; None if unknown (no statistics, or prefixes only)."""
        if self.floor is None:
            return None
        shares = [self.freq.get(lexeme.replace("''", "'").lower(), self.floor)
                  for lexeme, prefix in _LEXEME.findall(tsquery) if not prefix]
        return min(shares) if shares else None


_STATS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _stats(conn: Any) -> _WordStats:
    cached = _STATS.get(conn)
    if cached is None or time.monotonic() - cached.read_at > STATS_TTL_S:
        cached = _STATS[conn] = _WordStats(conn)
    return cached


def text_page(conn: Any, *, fields: tuple[str, list], words: Sequence[str], order: str,
              want: int) -> tuple[list[int], float] | None:
    """The newest ``want`` matches of a free-text search by walking the start-time order.

    ``fields`` is the WHERE clause (and its parameters) of the search's other criteria;
    ``words`` the tsquery of each user word (all must match). Returns the seqs of the
    matches, newest first, and an estimate of all matches from how far the walk went
    (``want`` matches in ``w`` rows of ``F`` candidates: ``want * F / w``) -- or None where
    the walk does not fit (rare words: the planner's plan is better) or did not fill the
    page within :data:`WALK_ROWS` rows.
    """
    field_where, field_params = fields
    stats = _stats(conn)
    candidates = (stats.rows if not field_where and stats.rows is not None
                  else planner_rows(conn, field_where, field_params))
    # an upper bound of the matches: the rarest single word's share of the candidates
    shares = [share for share in map(stats.word_share, words) if share is not None]
    if not shares:  # no statistics: the planner's estimate of each word alone
        cond = "d.doc @@ to_tsquery('simple', ?)"
        shares = [planner_rows(conn, f"{field_where} AND {cond}" if field_where else
                               f"WHERE {cond}", [*field_params, w]) / max(candidates, 1)
                  for w in words]
    upper = min(shares) * candidates
    if upper <= 0 or want * candidates / upper > WALK_ROWS:
        return None
    query = " & ".join(f"({w})" for w in words)
    inner = (f"SELECT d.seq, d.start_time, d.doc, row_number() OVER ({order}) AS walked "  # noqa: S608
             f"FROM datasets d {field_where} {order} LIMIT ?")
    outer_order = order.replace("d.", "w.")
    rows = conn.execute(
        f"SELECT w.seq, w.walked FROM ({inner}) w "  # noqa: S608
        f"WHERE w.doc @@ to_tsquery('simple', ?) {outer_order} LIMIT ?",
        [*field_params, WALK_ROWS, query, want]).fetchall()
    if len(rows) < want:  # not within the newest WALK_ROWS candidates: the planner's turn
        return None
    walked = int(rows[-1][1])
    # never more than the rarest word allows (the newest rows may hold more matches than
    # the rest: a sample measured this week)
    return [int(r[0]) for r in rows], min(want * max(candidates, walked) / walked, upper)


def counted_page(conn: Any, where: str, params: Sequence, *, order: str, limit: int,
                 offset: int) -> tuple[list[int], int | None]:
    """The page of a free-text search the planner answers from the GIN index (rare words),
    with the exact number of matches counted in the same pass (``count(*) OVER ()``: that
    plan reads every match's row to sort them anyway). Returns the seqs and the count
    (None when the page is empty: nothing to count it on)."""
    rows = conn.execute(
        f"SELECT d.seq, count(*) OVER () FROM datasets d {where} {order} "  # noqa: S608
        "LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
    return [int(r[0]) for r in rows], (int(rows[0][1]) if rows else None)


def total(conn: Any, where: str, params: Sequence, *, seen: int,
          estimate: float | None = None, text: bool = False,
          sampled: bool = False) -> tuple[int, bool]:
    """The total of a search whose page was full: ``(count, True)`` when there are at most
    :data:`EXACT_TOTAL_UP_TO` matches, else ``(estimate, False)``.

    ``seen``: matches up to the end of this page (the total is never less). ``estimate``:
    one already known (``sampled``: measured by :func:`text_page`), else the planner's row
    estimate. For free text (``text=True``) an estimate of at least
    :data:`TRUST_ESTIMATE_FACTOR` (sampled: :data:`TRUST_SAMPLED_FACTOR`) times the
    threshold is taken as it is; everything else is counted up to the threshold + 1.
    """
    cap = _search.EXACT_TOTAL_UP_TO
    if text and estimate is None:
        estimate = planner_rows(conn, where, params)
    factor = TRUST_SAMPLED_FACTOR if sampled else TRUST_ESTIMATE_FACTOR
    if text and estimate is not None and estimate >= factor * cap:
        return max(int(estimate), cap + 1, seen), False
    if seen <= cap:
        counted = conn.execute(
            f"SELECT count(*) FROM (SELECT FROM datasets d {where} LIMIT ?) capped",  # noqa: S608
            [*params, cap + 1]).fetchone()[0]
        if counted <= cap:
            return counted, True
    if estimate is None:
        estimate = planner_rows(conn, where, params)
    logger.debug("more than %d matches (%s): estimate %d", cap, where, estimate)
    return max(int(estimate), cap + 1, seen), False
