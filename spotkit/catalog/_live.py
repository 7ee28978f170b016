"""The live store: what ``spotkit live`` learns about a series while it is written.

:meth:`Catalog.record_live` writes :class:`~spotkit.catalog.LivePoint` s (one transaction
per batch, idempotent per (series, frame, kind)); watchers read them by frame
(:meth:`Catalog.live_points`) or by change number (:meth:`Catalog.live_changes`, what
:func:`spotkit.live.subscribe` polls); :meth:`Catalog.live_cursor` is where a killed
``spotkit live`` resumes; :meth:`Catalog.set_live_status` / :meth:`Catalog.live_status` /
:meth:`Catalog.live_series` say how far each series is.

Every point row carries ``seq``, its series' change number: a row written or replaced gets
the next one, taken inside the catalog's write lock, so change numbers become visible in
order (a watcher that saw change ``n`` never misses one below ``n``) and "what changed
after ``n``" is one index range on both databases.
"""

from __future__ import annotations

import json
import logging
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from spotkit.catalog._common import _dataset_id, _dumps
from spotkit.catalog._core import CatalogCore
from spotkit.catalog._live_point import LivePoint, kind_clause, point_row, points_from_rows
from spotkit.catalog._time import now_epoch
from spotkit.errors import DatasetNotFoundError

__all__ = ["LIVE_CHANNEL", "LIVE_ENDED_STATES", "LiveMixin", "live_notice", "live_state_notice"]

logger = logging.getLogger("spotkit.catalog._catalog")

#: A series whose status ``state`` becomes one of these is no longer active (unless the
#: same call says ``active=True``).
LIVE_ENDED_STATES = ("finished", "stopped", "failed")
#: keys the catalog adds to a status; they cannot be set as fields
_STATUS_KEYS = ("dataset_id", "active", "started_at", "updated_at", "age_s")
_SERIES_KEYS = ("beamline", "sample", "proposal", "title", "last_frame")
_POINT_COLUMNS = "frame, kind, payload, time_s, written_at, recorded_at"
#: The PostgreSQL channel :meth:`LiveMixin.record_live` notifies when a series got points
#: (channels belong to a database, so this is one channel per catalog).
LIVE_CHANNEL = "spotkit_live"


def live_notice(dataset_id: str, frame: int, change: int) -> str:
    """The payload of a :data:`LIVE_CHANNEL` notification: the series, the highest frame
    and the newest change number of the points just written, as compact JSON (a few dozen
    bytes of PostgreSQL's 8000).

    Examples
    --------
    >>> live_notice("ds-0001", 41, 97)
    '{"series":"ds-0001","frame":41,"change":97}'
    """
    return json.dumps({"series": dataset_id, "frame": int(frame), "change": int(change)},
                      separators=(",", ":"))


def live_state_notice(dataset_id: str, state: str | None, active: bool) -> str:
    """The payload of a :data:`LIVE_CHANNEL` notification that a series' live state changed
    (``state`` as :meth:`LiveMixin.set_live_status` sets it; ``active`` False once ended).

    Examples
    --------
    >>> live_state_notice("ds-0001", "finished", False)
    '{"series":"ds-0001","state":"finished","active":false}'
    """
    return json.dumps({"series": dataset_id, "state": state, "active": bool(active)},
                      separators=(",", ":"))


def _limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    return limit


class LiveMixin(CatalogCore):
    """The live store of :class:`~spotkit.catalog.Catalog`."""

    @property
    def live_channel(self) -> str | None:
        """The PostgreSQL channel :meth:`record_live` notifies (:data:`LIVE_CHANNEL`,
        payload :func:`live_notice`), for watchers to ``LISTEN`` on; None on SQLite, which
        has no notifications (watchers poll)."""
        return LIVE_CHANNEL if self._pg else None

    def _require_dataset(self, conn: Any, ds_id: str) -> None:
        if conn.execute("SELECT 1 FROM datasets WHERE id = ?", (ds_id,)).fetchone() is None:
            raise DatasetNotFoundError(ds_id, self._where_name())

    def record_live(
        self,
        dataset_id: str,
        points: Iterable[LivePoint],
        *,
        status: Mapping[str, Any] | None = None,
    ) -> int:
        """Record points of a live series in one transaction (all or none).

        A point replaces the one of the same (series, frame, kind); recording the very same
        point again (same values and times) changes nothing, so a batch can be recorded
        again after a crash without counting anything twice. Each new or changed point
        gets the series' next change number, which watchers poll
        (:func:`spotkit.live.subscribe`). On PostgreSQL the same transaction notifies
        :data:`LIVE_CHANNEL` (payload :func:`live_notice`) when a point is new or changed,
        so watchers that LISTEN wake at the commit instead of at their next poll.

        Parameters
        ----------
        dataset_id : str or Dataset
            The series (a raw dataset).
        points : iterable of LivePoint
            The points (mappings with the same fields are accepted). Several points of one
            (frame, kind) in a batch: the last one counts.
        status : mapping, optional
            Fields for :meth:`set_live_status`, written in the same transaction.

        Returns
        -------
        int
            How many points were new or changed.

        Raises
        ------
        ValueError, TypeError
            A point with a negative frame, an unknown kind or a value that is not a float,
            int, bool, str or None (nothing is written); the message names the point.
        DatasetNotFoundError
            Unknown series.

        Examples
        --------
        >>> import pathlib, tempfile
        >>> from spotkit.catalog import LivePoint, open_catalog
        >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
        >>> cat.bulk_load([{"kind": "saxs/raw", "sample": "film"}])  # a series
        1
        >>> series = cat[next(iter(cat))]
        >>> points = [LivePoint(f, "features", {"score": 0.1 * f}) for f in range(3)]
        >>> cat.record_live(series.id, points, status={"state": "following", "done": 3})
        3
        >>> cat.record_live(series.id, points)  # the same again: nothing new
        0
        >>> cat.live_cursor(series.id)
        2
        """
        ds_id = _dataset_id(dataset_id)
        rows: dict[tuple[str, int], tuple] = {}
        for i, point in enumerate(points):
            row = point_row(point, f"point {i}")
            rows[(row[1], row[0])] = row
        fields = self._status_fields(status) if status else None
        now = now_epoch()
        with self._write(f"recording {len(rows)} live points of {ds_id}") as conn:
            # the series is there, and its newest change number: one round trip
            known, last = conn.execute(
                "SELECT (SELECT count(*) FROM datasets WHERE id = ?), "
                "(SELECT coalesce(max(seq), 0) FROM live_points WHERE dataset_id = ?)",
                (ds_id, ds_id)).fetchone()
            if not known:
                raise DatasetNotFoundError(ds_id, self._where_name())
            changed = 0
            if rows:
                differs = "IS DISTINCT FROM" if self._pg else "IS NOT"
                conn.executemany(
                    "INSERT INTO live_points (dataset_id, kind, frame, seq, payload, time_s, "  # noqa: S608
                    "written_at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (dataset_id, kind, frame) DO UPDATE SET seq = excluded.seq, "
                    "payload = excluded.payload, time_s = excluded.time_s, "
                    "written_at = excluded.written_at, recorded_at = excluded.recorded_at "
                    f"WHERE live_points.payload {differs} excluded.payload "
                    f"OR live_points.time_s {differs} excluded.time_s "
                    f"OR live_points.written_at {differs} excluded.written_at",
                    [(ds_id, kind, frame, last + 1 + i, payload, time_s, written_at, now)
                     for i, (frame, kind, payload, time_s, written_at)
                     in enumerate(rows.values())],
                )
                changed, newest, top = conn.execute(
                    "SELECT count(*), max(seq), max(frame) FROM live_points WHERE "
                    "dataset_id = ? AND seq > ?", (ds_id, last)).fetchone()
                if changed and self._pg:
                    # delivered at the commit, to the watchers that LISTEN
                    conn.execute("SELECT pg_notify(?, ?)",
                                 (LIVE_CHANNEL, live_notice(ds_id, top, newest)))
            if fields is not None:
                self._put_status(conn, ds_id, fields, now)
        logger.debug("recorded %d live points of %s (%d new or changed)", len(rows), ds_id,
                     changed)
        return int(changed)

    def live_points(
        self,
        dataset_id: str,
        *,
        since: int = -1,
        kinds: str | Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[LivePoint]:
        """The points of a live series after frame ``since``, by frame (then in the order
        they were recorded).

        Parameters
        ----------
        dataset_id : str or Dataset
        since : int, optional
            Only frames > ``since`` (default -1: all).
        kinds : str or iterable of str, optional
            Only these kinds; a family (``"fit"``) also selects its named kinds
            (``"fit:sphere"``).
        limit : int, optional
            At most this many points (the first ones).

        Returns
        -------
        list of LivePoint

        Examples
        --------
        >>> import pathlib, tempfile
        >>> from spotkit.catalog import LivePoint, open_catalog
        >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
        >>> cat.bulk_load([{"kind": "saxs/raw", "sample": "film"}])  # a series
        1
        >>> series = cat[next(iter(cat))]
        >>> _ = cat.record_live(series.id, [LivePoint(0, "features", {"score": 0.1}),
        ...                                 LivePoint(1, "features", {"score": 0.2}),
        ...                                 LivePoint(1, "fit:sphere", {"radius": 4.1})])
        >>> [(p.frame, p.kind) for p in cat.live_points(series.id, since=0)]
        [(1, 'features'), (1, 'fit:sphere')]
        >>> [p.values for p in cat.live_points(series.id, kinds="fit")]
        [{'radius': 4.1}]
        """
        ds_id = _dataset_id(dataset_id)
        where, args = kind_clause(kinds)
        sql = (f"SELECT {_POINT_COLUMNS} FROM live_points WHERE dataset_id = ? "  # noqa: S608
               f"AND frame > ?{where} ORDER BY frame, seq")
        params: list[Any] = [ds_id, int(since), *args]
        if _limit(limit) is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return points_from_rows(rows)

    def live_changes(
        self,
        dataset_id: str,
        *,
        after: int = 0,
        since: int = -1,
        kinds: str | Iterable[str] | None = None,
        limit: int | None = None,
    ) -> tuple[list[LivePoint], int]:
        """The points recorded or replaced after change number ``after``, in the order
        they were recorded: what a watcher polls (:func:`spotkit.live.subscribe`).

        Parameters
        ----------
        dataset_id : str or Dataset
        after : int, optional
            The last change number already seen (0: none).
        since : int, optional
            Only frames > ``since``.
        kinds : str or iterable of str, optional
            As for :meth:`live_points`.
        limit : int, optional
            At most this many points; ask again from the returned number for the rest.

        Returns
        -------
        points : list of LivePoint
        last : int
            The change number to ask from next time (``after`` if nothing came).

        Examples
        --------
        >>> import pathlib, tempfile
        >>> from spotkit.catalog import LivePoint, open_catalog
        >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
        >>> cat.bulk_load([{"kind": "saxs/raw", "sample": "film"}])  # a series
        1
        >>> series = cat[next(iter(cat))]
        >>> _ = cat.record_live(series.id, [LivePoint(0, "features", {"score": 0.1})])
        >>> points, last = cat.live_changes(series.id)
        >>> _ = cat.record_live(series.id, [LivePoint(0, "fit:sphere", {"radius": 4.0})])
        >>> [p.kind for p in cat.live_changes(series.id, after=last)[0]]
        ['fit:sphere']
        """
        ds_id = _dataset_id(dataset_id)
        where, kind_args = kind_clause(kinds)
        args: list[Any] = list(kind_args)
        if since >= 0:
            where += " AND frame > ?"
            args.append(int(since))
        sql = ("SELECT seq, frame, kind, payload, time_s, written_at, recorded_at "  # noqa: S608
               "FROM live_points WHERE dataset_id = ? AND seq > ? AND seq <= ?"
               f"{where} ORDER BY seq")
        most = _limit(limit)
        if most is not None:
            sql += f" LIMIT {most}"
        after = int(after)
        with self._read() as conn:
            # the newest change first, then the rows up to it: one that commits in between
            # comes next time, never skipped
            (newest,) = conn.execute("SELECT coalesce(max(seq), 0) FROM live_points "
                                     "WHERE dataset_id = ?", (ds_id,)).fetchone()
            if newest <= after:
                return [], after
            rows = conn.execute(sql, [ds_id, after, newest, *args]).fetchall()
        full = most is not None and len(rows) == most
        return points_from_rows(rows, skip=1), int(rows[-1][0] if full else newest)

    def live_cursor(self, dataset_id: str, kind: str = "features") -> int:
        """The last frame of a series with a point of ``kind`` (-1: none): where a killed
        ``spotkit live`` resumes (at the next frame).

        Parameters
        ----------
        dataset_id : str or Dataset
        kind : str, optional
            An exact kind (default ``"features"``).

        Returns
        -------
        int
        """
        from spotkit.catalog._live_point import check_kind

        ds_id = _dataset_id(dataset_id)
        check_kind(kind)
        with self._read() as conn:
            (last,) = conn.execute("SELECT max(frame) FROM live_points WHERE dataset_id = ? "
                                   "AND kind = ?", (ds_id, kind)).fetchone()
        return -1 if last is None else int(last)

    # -- status -------------------------------------------------------------------------

    @staticmethod
    def _status_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
        bad = sorted(k for k in fields if k in _STATUS_KEYS[2:] + _SERIES_KEYS + ("dataset_id",))
        if bad:
            raise ValueError(f"live status fields {bad} are set by the catalog; choose "
                             "other names")
        out = dict(fields)
        _dumps(out, "live status fields")  # JSON-serialisable, or a TypeError naming them
        return out

    def _put_status(self, conn: Any, ds_id: str, fields: dict[str, Any], now: float) -> None:
        row = conn.execute("SELECT active, fields FROM live_status WHERE dataset_id = ?",
                           (ds_id,)).fetchone()
        merged = json.loads(row[1]) if row else {}
        active = bool(row[0]) if row else True
        before = (merged.get("state"), active)
        if "active" in fields:
            active = bool(fields.pop("active"))
        elif "state" in fields:
            active = fields["state"] not in LIVE_ENDED_STATES
        merged.update(fields)
        if self._pg and (merged.get("state"), active) != before:
            # a new state (following, behind, finished...): watchers hear of it at the commit
            # (the status's other fields change about once a second and are read with points)
            conn.execute("SELECT pg_notify(?, ?)",
                         (LIVE_CHANNEL, live_state_notice(ds_id, merged.get("state"), active)))
        text = _dumps(merged, "live status fields")
        if row is None:
            conn.execute("INSERT INTO live_status (dataset_id, active, fields, started_at, "
                         "updated_at) VALUES (?, ?, ?, ?, ?)",
                         (ds_id, int(active), text, now, now))
        else:
            conn.execute("UPDATE live_status SET active = ?, fields = ?, updated_at = ? "
                         "WHERE dataset_id = ?", (int(active), text, now, ds_id))

    def set_live_status(self, dataset_id: str, **fields: Any) -> dict:
        """Say how far a live series is; the fields are merged into those set before.

        Parameters
        ----------
        dataset_id : str or Dataset
            The series.
        **fields
            JSON-serialisable values, e.g. ``written``, ``done``, ``behind``, ``rate_hz``,
            ``latency_s``, ``state``. ``active=False`` (or a ``state`` of
            :data:`LIVE_ENDED_STATES`: ``"finished"``, ``"stopped"``, ``"failed"``) ends
            the series' live phase; ``active=True`` (or another state) starts it again.

        Returns
        -------
        dict
            The status as :meth:`live_status` returns it.

        Examples
        --------
        >>> import pathlib, tempfile
        >>> from spotkit.catalog import open_catalog
        >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
        >>> cat.bulk_load([{"kind": "saxs/raw", "sample": "film"}])  # a series
        1
        >>> series = cat[next(iter(cat))]
        >>> status = cat.set_live_status(series.id, state="following", written=4, done=3)
        >>> status["done"], status["active"]
        (3, True)
        >>> [s["dataset_id"] for s in cat.live_series()] == [series.id]
        True
        >>> cat.set_live_status(series.id, state="finished")["active"]
        False
        >>> cat.live_series()
        []
        """
        ds_id = _dataset_id(dataset_id)
        checked = self._status_fields(fields)
        with self._write(f"setting the live status of {ds_id}") as conn:
            self._require_dataset(conn, ds_id)
            self._put_status(conn, ds_id, checked, now_epoch())
        return typing.cast(dict, self.live_status(ds_id))  # just written

    def live_status(self, dataset_id: str) -> dict | None:
        """The live status of a series (None if it never had one): the fields set by
        :meth:`set_live_status`, plus ``dataset_id``, ``active``, ``started_at``,
        ``updated_at`` (unix times) and ``age_s`` (seconds since the last update)."""
        ds_id = _dataset_id(dataset_id)
        with self._read() as conn:
            row = conn.execute("SELECT dataset_id, active, fields, started_at, updated_at "
                               "FROM live_status WHERE dataset_id = ?", (ds_id,)).fetchone()
        return None if row is None else self._status_dict(row, now_epoch())

    @staticmethod
    def _status_dict(row: Any, now: float) -> dict:
        out = json.loads(row[2])
        out.update(dataset_id=row[0], active=bool(row[1]), started_at=row[3],
                   updated_at=row[4], age_s=max(0.0, now - row[4]))
        return out

    def live_series(self, *, active: bool | None = True) -> list[dict]:
        """The series with a live status, most recently updated first.

        Parameters
        ----------
        active : bool or None, optional
            True (default): only those being followed; False: only those that ended;
            None: all.

        Returns
        -------
        list of dict
            Each as :meth:`live_status` returns it, plus the series' ``beamline``,
            ``sample``, ``proposal``, ``title`` and ``last_frame`` (the last frame with
            features, -1: none).
        """
        sql = ("SELECT s.dataset_id, s.active, s.fields, s.started_at, s.updated_at, "
               "d.beamline, d.sample, d.proposal, d.title, "
               "(SELECT max(p.frame) FROM live_points p WHERE p.dataset_id = s.dataset_id "
               "AND p.kind = 'features') FROM live_status s JOIN datasets d "
               "ON d.id = s.dataset_id")
        params: list[Any] = []
        if active is not None:
            sql += " WHERE s.active = ?"
            params.append(int(bool(active)))
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY s.updated_at DESC", params).fetchall()
        now = now_epoch()
        out = []
        for row in rows:
            entry = self._status_dict(row[:5], now)
            entry.update(zip(_SERIES_KEYS, (*row[5:9], -1 if row[9] is None else int(row[9])),
                             strict=True))
            out.append(entry)
        return out
