"""Follow a series while the detector writes it: :class:`LiveSession` (``spotkit live``).

Per frame: reduce (I(q) and sigma) -> the online change detector -> a ``features`` point
(and an ``event`` point when a change is confirmed) and the I(q) row in the ProfileLog ->
frame marks (:func:`spotkit.change.reduction_policy`'s labels) -> the rules' live triggers.

Crash safety: the I(q) rows are flushed to the ProfileLog first, then a batch of points
is recorded in the catalog in one transaction (the catalog's cursor moves only there),
then the marks (idempotent) and the triggers. A session started again on the same series,
after a SIGKILL or anywhere, goes on at the first frame not recorded: it cuts the
ProfileLog back to the cursor, rebuilds the detector from its last checkpoint and the
profiles after it (or from the profiles since it last started afresh), and hands the
triggers the last batch again (they take no decision twice), so no frame is counted twice
and none is skipped. A catalog that refuses writes for a while (an outage) delays the
points, it does not end the session; an error anywhere else ends it (a new one resumes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from spotkit.backoff import Backoff
from spotkit.catalog import LivePoint
from spotkit.errors import CatalogError, DatasetNotFoundError, InputFileError, SpotkitError

from . import _checkpoint as checkpoint
from ._judge import _Judge, event_values, feature_values
from ._marks import _Marker
from ._parts import fingerprint, load_integrator, load_mask, make_reducer, open_source
from ._register import find_series, ingest_final, register
from ._status import FINAL_STATES, LiveStatus, _Meter

__all__ = ["LiveSession"]

logger = logging.getLogger(__name__)

#: seconds without a new frame after which a writer counts as paused
WAIT_AFTER_S = 2.0
#: a batch (one catalog transaction) holds about this much work, and at most this many bytes
#: of frames
BATCH_SECONDS = 0.5
BATCH_BYTES = 256 * 2**20
#: waits between tries while the catalog cannot be written (frames go on being reduced)
OUTAGE_BACKOFF = Backoff(first=1.0, factor=2.0, maximum=30.0)


class LiveSession:
    """Reduce, judge and record the frames of a series while the detector writes it.

    Parameters
    ----------
    source : path-like or FrameSource
        The HDF5/NeXus file being appended or the folder frame files arrive in
        (:func:`spotkit.io.follow_frames`), or a frame source already open.
    catalog : Catalog or path-like, optional
        Where the series, its points, marks and status are recorded (default:
        :func:`spotkit.catalog.open_catalog`).
    geometry : AzimuthalIntegrator or path-like, optional
        The detector geometry or its PONI file (default: the series' own PONI file).
    mask : array of bool or path-like, optional
        Invalid pixels (True), or a mask file (default: the series' mask file, if any;
        negative pixels, e.g. module gaps, are always ignored).
    npt : int
        Bins of I(q).
    detector : dict, optional
        :class:`~spotkit.change.OnlineDetector` options (``warmup``, ``threshold``,
        ``holdoff``...).
    rules : Rules or path-like, optional
        Rules with a ``live:`` section (:class:`spotkit.flows.LiveTriggers`).
    dataset_id : str, optional
        The series in the catalog; default: the live series already following this path,
        else a new raw dataset (status ``"acquiring"``) registered at the first frame.
    on_point : callable, optional
        Called with each :class:`~spotkit.catalog.LivePoint` once it is recorded.
    marks : dict, optional
        ``before``, ``after``, ``every`` for :func:`spotkit.change.reduction_policy`.
    ingest : bool
        When the writer has finished, ingest the finished series (with its checksums,
        status ``"raw"``) and set the live one to ``"superseded"`` (its points stay).
    max_batch : int
        Frames per catalog transaction at most (:meth:`run` polls :attr:`batch_size`
        frames at a time: fewer when a batch would take more than half a second or 256 MB).
    status_interval : float
        Seconds between status updates in the catalog (and at each change of state).

    Attributes
    ----------
    dataset_id : str or None
        The series in the catalog (None until its first frame registers a new one).
    cursor : int
        The last frame recorded (-1: none).
    ingested_as : str or None
        The finished series' dataset, once the writer has ended it and it was ingested.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_saxs_series
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> truth = simulate_saxs_series(work / "film.h5", n_frames=24, onset_frame=14, seed=3)
    >>> cat = open_catalog(work / "catalog.db")
    >>> with LiveSession(truth.path, catalog=cat) as live:
    ...     status = live.run(idle_timeout=5)
    >>> status.done, status.state, status.events
    (24, 'finished', 1)
    >>> [p.values["onset"] for p in cat.live_points(live.dataset_id, kinds="event")]
    [14]
    """

    def __init__(self, source: Any, *, catalog: Any = None, geometry: Any = None,
                 mask: Any = None, npt: int = 300, detector: dict | None = None,
                 rules: Any = None, dataset_id: str | None = None,
                 on_point: Callable[[LivePoint], Any] | None = None,
                 marks: dict | None = None, ingest: bool = True, max_batch: int = 64,
                 status_interval: float = 1.0) -> None:
        from spotkit.catalog import Catalog, open_catalog

        if int(npt) != npt or npt < 2:
            raise ValueError(f"npt must be an integer >= 2, got {npt!r}")
        if int(max_batch) != max_batch or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        self.npt, self.max_batch = int(npt), int(max_batch)
        self.status_interval = float(status_interval)
        self._own_catalog = not isinstance(catalog, Catalog)
        self.catalog = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
        self._given_source = None if isinstance(source, str | os.PathLike) else source
        raw = source if self._given_source is None else getattr(source, "path", None)
        if raw is None:
            raise ValueError("source must be a path or a frame source with a .path")
        self.path = Path(raw).expanduser().absolute()
        self._geometry, self._mask = geometry, mask
        self._judge = _Judge(detector)
        self._marker_opts = dict(marks or {})
        self._rules, self._on_point, self._ingest = rules, on_point, bool(ingest)
        self._meter = _Meter()
        self._pending: list[LivePoint] = []
        self._rows: list[tuple[int, np.ndarray, np.ndarray]] = []  # I(q) rows to append
        self._events: dict[int, LivePoint] = {}  # event points of the batch, by frame
        self._status_at = 0.0
        self._since_ck = 0  # frames recorded since the detector's last checkpoint
        self._failures, self._retry_at = 0, 0.0  # catalog writes failed in a row; next try
        self._unmarked: list[tuple[int, str, str]] = []  # marks not written yet
        self._state = "starting"
        self._closed = False
        self._broken: str | None = None  # why the session stopped on an error
        self._reducer: Any = None
        self._frame_bytes = 0
        self._radial: np.ndarray | None = None
        self._log: Any = None
        self._triggers: Any = None
        self.ingested_as: str | None = None
        self.dataset_id = find_series(self.catalog, self.path, dataset_id,
                                      probe=self._given_source is None)
        status = (self.catalog.live_status(self.dataset_id) or {}) if self.dataset_id else {}
        self.cursor = self.catalog.live_cursor(self.dataset_id) if self.dataset_id else -1
        self.first = int(status.get("first_frame", self.cursor + 1))
        self.ingested_as = status.get("ingested_as")  # a series followed to its end before
        if status.get("masked_bins") is not None:
            self._judge.bad_bins = [int(b) for b in status["masked_bins"]]
        self._marker = _Marker(**self._marker_opts, first=self.first,
                               lag=self._judge.reach + int(self._marker_opts.get("before", 3)))
        if self.dataset_id is not None and not self.ingested_as:
            self._claim(status)
        try:
            self._source = self._given_source or open_source(self.path, start=self.cursor + 1)
        except BaseException:
            if self._log is not None:
                self._log.close()
            raise
        self._last_frame_at = time.monotonic()
        if self.cursor >= 0:
            logger.info("%s: resuming series %s after frame %d", self.path, self.dataset_id,
                        self.cursor)

    # -- the series in the catalog -------------------------------------------------------
    def _claim(self, status: dict) -> None:
        """Open the series' ProfileLog now: it has one writer, so a second session on a
        series another one is following fails here, naming that process."""
        from spotkit.live._store import ProfileLog, profile_log_path

        assert self.dataset_id is not None
        path = profile_log_path(self.catalog, self.dataset_id)
        if not path.exists():
            return
        try:
            self._log = ProfileLog(path, dim=str(status.get("dim", "q")), autoflush=False)
        except InputFileError as exc:
            raise SpotkitError(
                f"{self.path}: series {self.dataset_id} is being followed by another live "
                f"session ({exc.problem}); stop that one first (`spotkit live --status` lists "
                "the series followed)") from None

    def _register(self, first: np.ndarray) -> str:
        ds_id = register(self.catalog, self.path, getattr(self._source, "info", None))
        self.catalog.set_live_status(ds_id, path=str(self.path), state="starting",
                                     first_frame=self.first, npt=self.npt,
                                     fingerprint=fingerprint(first),
                                     fingerprint_frame=self.first)
        return ds_id

    # -- set-up at the first frame -------------------------------------------------------
    def _setup(self, first: np.ndarray) -> None:
        from spotkit.live._store import ProfileLog, profile_log_path

        info = getattr(self._source, "info", None)
        integrator = load_integrator(self._geometry, info, first.shape, self.path)
        mask = load_mask(self._mask, info, first.shape, self.path)
        self._reducer = make_reducer(integrator, npt=self.npt, mask=mask)
        if self.dataset_id is None:
            self.dataset_id = self._register(first)
        radial = self._radial = np.asarray(self._reducer.radial, dtype=np.float64)
        dim = str(getattr(self._reducer, "dim", "q"))
        log_path = profile_log_path(self.catalog, self.dataset_id)
        if self._log is None:
            self._log = ProfileLog(log_path, radial, dim=dim, autoflush=False,
                                   unit=getattr(self._reducer, "units", None))
        elif self._log.radial.shape != radial.shape or not np.allclose(self._log.radial, radial):
            raise ValueError(
                f"{self.path}: series {self.dataset_id} was reduced to {self._log.radial.size} "
                f"bins of {self._log.dim} ({self._log.radial[0]:g}..{self._log.radial[-1]:g}); "
                f"now {radial.size} ({radial[0]:g}..{radial[-1]:g}): follow it with the npt, "
                "geometry and mask it was started with")
        self._ck_path = checkpoint.checkpoint_path(log_path)
        removed = self._log.truncate(after_frame=self.cursor)
        if removed:
            logger.info("%s: %d I(q) row(s) after frame %d were never recorded: removed",
                        self.path, removed, self.cursor)
        self.catalog.set_live_status(self.dataset_id, path=str(self.path),
                                     profile_log=str(log_path), dim=dim, npt=radial.size)
        self._resume()
        if self._rules is not None:
            self._triggers = self._make_triggers()
            self._refeed()
        self._meter.restart()  # the rate counts frames, not the set-up

    def _make_triggers(self) -> Any:
        from spotkit.flows import LiveTriggers

        fit = None
        try:
            from spotkit.live._fit import fit_latest  # type: ignore[import-not-found,unused-ignore]

            fit = fit_latest
        except ImportError:
            pass
        assert self.dataset_id is not None
        return LiveTriggers(self._rules, self.catalog, dataset_id=self.dataset_id, fit=fit)

    def _refeed(self) -> None:
        assert self.dataset_id is not None
        if self.cursor >= 0:
            checkpoint.refeed(self.catalog, self.dataset_id, self._triggers,
                              since=max(self.first - 1, self.cursor - self.max_batch))

    def _resume(self) -> None:
        """Marks and detector state of the frames recorded before (nothing if none)."""
        if self.cursor >= 0:
            assert self.dataset_id is not None
            self._judge = checkpoint.restore(
                self.catalog, self.dataset_id, self._log, self._judge, self._marker,
                first=self.first, cursor=self.cursor, path=self._ck_path)

    # -- per frame -----------------------------------------------------------------------
    def _process(self, frame: Any) -> None:
        data = np.asarray(frame.data)
        self._frame_bytes = data.nbytes
        if self._reducer is None:
            self._setup(data)
        if self._state == "starting":
            self._state = "following"
        intensity, sigma = self._reducer.reduce(data)
        self._rows.append((frame.index, intensity, sigma))
        result, event, offset = self._judge.judge(frame.index, intensity, sigma)
        point = LivePoint(frame.index, "features", feature_values(result, intensity),
                          frame.time_s, frame.written_at)
        self._pending.append(point)
        if event is not None:
            values = event_values(event, offset, self._radial)
            ep = LivePoint(frame.index, "event", values, frame.time_s, frame.written_at)
            self._pending.append(ep)
            self._events[frame.index] = ep
            self._marker.add_event(values["onset"], values["end"])
            logger.info("%s: change confirmed at frame %d: onset %d, end %d, confidence "
                        "%.3f (%s)", self.path, frame.index, values["onset"], values["end"],
                        values["confidence"] or 0.0, values["feature"])

    def _flush(self, *, finished: bool = False) -> list[LivePoint]:
        """Record the pending points (one transaction), then marks and triggers. While the
        catalog is away (an outage), the points wait and are tried again later."""
        if not self._pending or time.monotonic() < self._retry_at:
            return []
        points, self._pending = self._pending, []
        events, self._events = self._events, {}
        assert self.dataset_id is not None
        rows, self._rows = self._rows, []
        if rows:  # the I(q) rows first, then the points: a kill between leaves rows only
            self._log.append([r[0] for r in rows], np.stack([r[1] for r in rows]),
                             np.stack([r[2] for r in rows]))
        self._log.flush()
        frames = [p for p in points if p.kind == "features"]
        new_cursor = frames[-1].frame
        status = None
        if time.monotonic() - self._status_at >= self.status_interval or events or finished:
            status = self._status_fields(done=new_cursor + 1)
            self._status_at = time.monotonic()
        try:
            self.catalog.record_live(self.dataset_id, points, status=status)
        except DatasetNotFoundError:
            raise
        except CatalogError as exc:  # the catalog is away: keep them, try again later
            self._pending, self._events = points, events
            self._outage(exc)
            return []
        self._outage(None)
        now = time.time()
        self._meter.add(len(frames), [now - p.written_at for p in frames
                                      if p.written_at is not None])
        self.cursor = new_cursor
        self._since_ck = 0 if events else self._since_ck + len(frames)
        if checkpoint.due(self._judge, self._since_ck):
            self._since_ck = 0
            try:
                checkpoint.save(self._ck_path, self._judge, self.cursor)
            except OSError as exc:  # a restart then replays more profiles, that is all
                logger.warning("%s: detector checkpoint not saved: %s", self.path, exc)
        recorded = [replace(p, recorded_at=now) for p in points]
        self._mark(finished=finished)
        if self._triggers is not None:
            for p in recorded:
                if p.kind == "features":
                    self._triggers.on_frame(p, event=events.get(p.frame))
        if self._on_point is not None:
            for p in recorded:
                self._on_point(p)
        return recorded

    def _outage(self, exc: Exception | None) -> None:
        """Count a failed catalog write (and wait longer before the next), or its end."""
        if exc is None:
            if self._failures:
                logger.warning("%s: the catalog is back after %d failed write(s)", self.path,
                               self._failures)
            self._failures, self._retry_at = 0, 0.0
            return
        self._failures += 1
        wait = OUTAGE_BACKOFF.delay(self._failures)
        self._retry_at = time.monotonic() + wait
        logger.warning("%s: the catalog cannot be written (%s); %d frame(s) wait, trying "
                       "again in %.0f s", self.path, exc,
                       sum(p.kind == "features" for p in self._pending), wait)

    def _mark(self, *, finished: bool = False) -> None:
        frames, labels, reasons = self._marker.due(self.cursor + 1, finished=finished)
        self._unmarked += list(zip(frames, labels, reasons, strict=True))
        if self._unmarked:
            assert self.dataset_id is not None
            f, lb, rs = zip(*self._unmarked, strict=True)
            try:
                self.catalog.mark_frames(self.dataset_id, f, lb, reasons=rs)
            except DatasetNotFoundError:
                raise
            except CatalogError as exc:  # marked with the next batch (a mark replaces)
                logger.warning("%s: %d frame mark(s) wait: %s", self.path,
                               len(self._unmarked), exc)
                return
            self._unmarked = []

    # -- status --------------------------------------------------------------------------
    @property
    def status(self) -> LiveStatus:
        """Where the session stands now (:class:`LiveStatus`)."""
        written = max(int(getattr(self._source, "available", 0)), self.cursor + 1)
        done = self.cursor + 1
        return LiveStatus(written=written, done=done, behind=max(0, written - done),
                          rate_hz=round(self._meter.rate(), 3),
                          latency_s=self._meter.latency(), state=self._state,
                          events=len(self._marker.events),
                          reduction_factor=self._marker.reduction_factor,
                          dataset_id=self.dataset_id)

    def _update_state(self, got: int) -> None:
        if self._state in FINAL_STATES:
            return
        now = time.monotonic()
        if got:
            self._last_frame_at = now
        source = self._source
        behind = max(0, int(getattr(source, "available", 0)) - (self.cursor + 1))
        if self._failures:
            self._state = "outage"
        elif getattr(source, "finished", False) and behind == 0 and not self._pending:
            self._state = "finished"
        elif behind > 0:  # written before the poll, not taken by this batch
            self._state = "behind"
        elif not got and now - self._last_frame_at > WAIT_AFTER_S:
            self._state = "waiting"
        elif got or self._state == "starting":
            self._state = "following" if self.dataset_id else "starting"

    def _status_fields(self, *, done: int | None = None) -> dict[str, Any]:
        s = self.status
        fields = {k: v for k, v in s.to_dict().items() if k != "dataset_id"}
        if done is not None:
            fields.update(done=done, behind=max(0, s.written - done))
        fields["masked_bins"] = self._judge.bad_bins
        fields["first_frame"] = self.first
        return fields

    def _publish_status(self) -> None:
        if self.dataset_id is None or self._failures:
            return
        try:
            self.catalog.set_live_status(self.dataset_id, **self._status_fields())
        except DatasetNotFoundError:
            raise
        except CatalogError as exc:
            logger.warning("%s: the live status cannot be written: %s", self.path, exc)
        self._status_at = time.monotonic()

    # -- the loop ------------------------------------------------------------------------
    def step(self, max_frames: int | None = None) -> list[LivePoint]:
        """Process the frames written since the last step (at most ``max_frames``), record
        them in one transaction, and return their points. Never waits for frames.

        Returns
        -------
        list of LivePoint
            The ``features`` (and ``event``) points recorded by this step.
        """
        if self._closed:
            raise ValueError(f"the live session of {self.path} is closed")
        if self._broken is not None:
            raise SpotkitError(
                f"the live session of {self.path} stopped on an error ({self._broken}); "
                f"start a new one: it resumes at frame {self.cursor + 1}")
        frames = self._source.poll(max_frames)
        before = self._state
        recorded: list[LivePoint] = []
        try:
            try:
                for frame in frames:
                    if frame.index <= self.cursor:
                        continue  # recorded before (a source opened before the cursor)
                    self._process(frame)
            finally:  # what was done is recorded, even when a frame failed
                done_now = bool(self._pending) and getattr(self._source, "exhausted", False)
                recorded = self._flush(finished=done_now)
        except BaseException as exc:
            self._fail(exc)
            raise
        self._update_state(len(frames))
        if self._state == "finished":
            self._finish()
        elif self._state != before or time.monotonic() - self._status_at >= \
                self.status_interval:
            self._publish_status()
        return recorded

    def _fail(self, exc: BaseException) -> None:
        """Frames handed out by the source were not recorded: this session must not go on
        (a new one resumes at the first frame not recorded)."""
        self._broken = f"{type(exc).__name__}: {exc}"
        interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
        self._state = "stopped" if interrupted else "failed"
        if not interrupted:
            logger.error("%s: live session failed after frame %d: %s", self.path,
                         self.cursor, self._broken)
        with contextlib.suppress(Exception):
            if self.dataset_id is not None:
                self.catalog.set_live_status(self.dataset_id, **self._status_fields(),
                                             error=None if interrupted else self._broken)

    @property
    def batch_size(self) -> int:
        """Frames to poll at once: at most ``max_batch``, about half a second of work at
        the current rate (so a session far behind still records, and says so, twice a
        second), and at most 256 MB of frames."""
        n = self.max_batch
        if self._frame_bytes:
            n = min(n, max(1, BATCH_BYTES // self._frame_bytes))
        rate = self._meter.rate()
        if rate > 0:
            n = min(n, max(1, int(rate * BATCH_SECONDS)))
        return n

    def run(self, *, idle_timeout: float | None = None,
            stop: threading.Event | Callable[[], bool] | None = None,
            interval: float = 0.05) -> LiveStatus:
        """Follow the series until the writer finishes it (or ``stop``, or idle).

        Parameters
        ----------
        idle_timeout : float, optional
            Return after this many seconds without a new frame (a writer that died leaves
            no end marker); default: wait for the end.
        stop : threading.Event or callable, optional
            Return as soon as it is set (or returns True).
        interval : float
            Seconds between polls when nothing new has come.

        Returns
        -------
        LiveStatus
        """
        def stopped() -> bool:
            if stop is None:
                return False
            return stop.is_set() if isinstance(stop, threading.Event) else bool(stop())

        while self._state not in FINAL_STATES:
            if stopped():
                break
            got = self.step(self.batch_size)
            if self._state in FINAL_STATES:
                break
            if not got:
                if idle_timeout is not None and \
                        time.monotonic() - self._last_frame_at > idle_timeout:
                    logger.info("%s: no new frame for %.1f s; stop following", self.path,
                                idle_timeout)
                    break
                time.sleep(interval)
        return self.status

    def _finish(self) -> None:
        """The writer has finished and every frame is recorded: final marks, the finished
        series ingested."""
        assert self.dataset_id is not None
        self._mark(finished=True)
        if self._triggers is not None:  # the actions waiting for frames after the end run
            triggers, self._triggers = self._triggers, None
            triggers.close()
        if self._log is not None:  # the checkpoint is not needed any more
            checkpoint.checkpoint_path(self._log.path).unlink(missing_ok=True)
        self.catalog.set_live_status(self.dataset_id, **self._status_fields())  # watchers
        if self._ingest and self.ingested_as is None:
            if self._given_source is None:
                self._source.close()  # the file is read again, with the catalog's reader
            try:  # reads and hashes the whole series: after the status said finished
                self.ingested_as = ingest_final(self.catalog, self.dataset_id, self.path)
                self.catalog.set_live_status(self.dataset_id, ingested_as=self.ingested_as)
            except (SpotkitError, OSError) as exc:
                logger.warning("%s: the finished series could not be ingested: %s",
                               self.path, exc)
                self.catalog.set_live_status(self.dataset_id, ingest_error=str(exc))
        logger.info("%s: finished: %s", self.path, self.status.summary())

    # -- closing -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop following: the series' status says ``"stopped"`` unless it finished."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._state not in FINAL_STATES and self.dataset_id is not None:
                self._state = "stopped"
                self._publish_status()
        finally:
            if self._triggers is not None:
                self._triggers.close()
            if self._given_source is None:
                self._source.close()  # idempotent
            if self._log is not None:
                self._log.close()
            if self._own_catalog:
                self.catalog.close()

    def __enter__(self) -> LiveSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LiveSession {self.path} {self.status.summary()}>"
