"""Frames of a series marked ``of interest`` / ``redundant`` (:meth:`Catalog.mark_frames`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from spotkit.catalog._common import (
    _dataset_id,
)
from spotkit.catalog._core import CatalogCore
from spotkit.catalog._time import from_epoch, now_epoch
from spotkit.errors import CatalogError, DatasetNotFoundError

logger = logging.getLogger("spotkit.catalog._catalog")


class MarksMixin(CatalogCore):
    """Frame marks for :class:`~spotkit.catalog.Catalog`."""

    #: The labels :meth:`mark_frames` accepts.
    FRAME_LABELS = ("of interest", "redundant")

    def mark_frames(
        self,
        dataset_id: str,
        frames: Iterable[int],
        labels: str | Iterable[str],
        *,
        reasons: str | Iterable[str | None] | None = None,
        run_id: str | None = None,
    ) -> int:
        """Mark frames of a series ``"of interest"`` or ``"redundant"`` (one transaction).

        A mark is advice for the transfer and storage rules (e.g. change detection's
        reduction policy, :mod:`spotkit.change`); spotkit never deletes a frame because of
        it. Marking a frame again replaces its mark.

        Parameters
        ----------
        dataset_id : str or Dataset
            The series (a raw dataset).
        frames : iterable of int
            Frame indices (>= 0).
        labels : str or iterable of str
            One label for all frames, or one per frame: ``"of interest"`` or ``"redundant"``.
        reasons : str or iterable of str, optional
            Why (one for all, or one per frame), e.g. ``"onset at frame 41"``.
        run_id : str, optional
            The run that decided it (its provenance).

        Returns
        -------
        int
            Number of frames marked.

        Raises
        ------
        ValueError
            A label other than those of :attr:`FRAME_LABELS`, a negative frame, or lists of
            different lengths (nothing is written).
        DatasetNotFoundError, CatalogError
            Unknown dataset or run.

        Examples
        --------
        >>> import pathlib, tempfile
        >>> from spotkit.catalog import open_catalog
        >>> from spotkit.sim import simulate_saxs_series
        >>> work = pathlib.Path(tempfile.mkdtemp())
        >>> truth = simulate_saxs_series(work / "series.h5", n_frames=8, onset_frame=5, seed=1)
        >>> cat = open_catalog(work / "catalog.db")
        >>> series = cat.ingest(truth.path)
        >>> cat.mark_frames(series.id, [4, 5, 6], "of interest", reasons="onset at frame 5")
        3
        >>> cat.mark_frames(series.id, [0, 1], "redundant")
        2
        >>> [(m["frame"], m["label"]) for m in cat.frame_marks(series.id, label="redundant")]
        [(0, 'redundant'), (1, 'redundant')]
        """
        ds_id = _dataset_id(dataset_id)
        frames = [int(f) for f in frames]
        n = len(frames)

        def per_frame(value, name):
            if value is None or isinstance(value, str):
                return [value] * n
            value = list(value)
            if len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} frames; give one "
                                 "per frame or a single value")
            return value

        labels = list(per_frame(labels, "labels"))
        reasons = per_frame(reasons, "reasons")
        bad = sorted({str(lb) for lb in labels} - set(self.FRAME_LABELS))
        if bad:
            raise ValueError(f"unknown frame label(s) {bad}; choose one of {self.FRAME_LABELS}")
        if any(f < 0 for f in frames):
            raise ValueError(f"frame indices must be >= 0, got {min(frames)}")
        now = now_epoch()
        with self._write(f"marking {n} frames of {ds_id}") as conn:
            if conn.execute("SELECT 1 FROM datasets WHERE id = ?", (ds_id,)).fetchone() is None:
                raise DatasetNotFoundError(ds_id, self._where_name())
            if run_id is not None and conn.execute(
                    "SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise CatalogError(f"no run with id {run_id!r} in catalog {self._where_name()}")
            conn.executemany(
                "INSERT INTO frame_marks (dataset_id, frame, label, reason, run_id, marked_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dataset_id, frame) DO UPDATE SET "
                "label = excluded.label, reason = excluded.reason, run_id = excluded.run_id, "
                "marked_at = excluded.marked_at",
                [(ds_id, f, lb, rs, run_id, now)
                 for f, lb, rs in zip(frames, labels, reasons, strict=True)],
            )
        logger.info("marked %d frames of %s (%s)", n, ds_id,
                    ", ".join(f"{lb}: {labels.count(lb)}" for lb in sorted(set(labels))))
        return n

    def frame_marks(self, dataset_id: str, *, label: str | None = None) -> list[dict]:
        """The frame marks of a series, by frame: ``{"frame", "label", "reason", "run_id",
        "marked_at"}`` each (see :meth:`mark_frames`).

        Parameters
        ----------
        dataset_id : str or Dataset
        label : str, optional
            Only this label.

        Returns
        -------
        list of dict
        """
        ds_id = _dataset_id(dataset_id)
        if label is not None and label not in self.FRAME_LABELS:
            raise ValueError(f"unknown frame label {label!r}; choose one of {self.FRAME_LABELS}")
        sql = ("SELECT frame, label, reason, run_id, marked_at FROM frame_marks "
               "WHERE dataset_id = ?")
        args: list = [ds_id]
        if label is not None:
            sql += " AND label = ?"
            args.append(label)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY frame", args).fetchall()
        return [{"frame": r[0], "label": r[1], "reason": r[2], "run_id": r[3],
                 "marked_at": from_epoch(r[4])} for r in rows]
