"""The detector's state after a restart: replayed from the ProfileLog, from a checkpoint.

The online detector's state at a frame depends on every frame since it last started afresh
(after a change's hold-off, or at the series' start), so a restarted session replays those
frames' I(q) from the ProfileLog. After a long quiet stretch that is many frames (about a
millisecond each), so the session also saves the detector now and then beside the
ProfileLog (a pickle, written atomically, only ever read back by spotkit from the catalog's
own folder); a restart then replays only the frames after it. A checkpoint that does not
fit (another detector setting, another stretch, unreadable) is ignored: the replay starts
from the stretch's first frame, and the result is the same either way.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._judge import _Judge

logger = logging.getLogger(__name__)

#: frames judged between checkpoints, at least (and a quarter of the stretch so far)
CHECKPOINT_EVERY = 1000
_VERSION = 2


def checkpoint_path(log_path: str | os.PathLike) -> Path:
    """``<series>.profiles.detector.pkl`` beside the ProfileLog ``<series>.profiles.h5``."""
    return Path(log_path).with_suffix(".detector.pkl")


def due(judge: _Judge, since: int) -> bool:
    """Whether to save a checkpoint, ``since`` frames after the last one."""
    return judge.stretch >= CHECKPOINT_EVERY and since >= max(CHECKPOINT_EVERY,
                                                               judge.stretch // 4)


def save(path: Path, judge: _Judge, cursor: int) -> None:
    """Save the detector as it is after frame ``cursor`` (atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    t0 = time.perf_counter()
    with open(tmp, "wb") as fh:
        pickle.dump({"version": _VERSION, "cursor": int(cursor), "judge": judge}, fh,
                    protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    logger.debug("detector checkpoint after frame %d: %s (%.2f s)", cursor, path,
                 time.perf_counter() - t0)


def load(path: Path, *, options: Mapping[str, Any], start: int,
         cursor: int) -> tuple[_Judge, int] | None:
    """The saved detector and its frame, if it is one of the stretch ``start..cursor``
    with these options; else None."""
    if not path.exists():
        return None
    try:
        with open(path, "rb") as fh:
            saved = pickle.load(fh)  # noqa: S301 (written by spotkit in the catalog's folder)
        judge, frame = saved["judge"], int(saved["cursor"])
        fits = (saved.get("version") == _VERSION and isinstance(judge, _Judge)
                and judge.options == dict(options) and start <= frame <= cursor
                and judge.hold_until < start)
    except Exception as exc:  # an old or damaged file: replay the whole stretch
        logger.warning("detector checkpoint %s cannot be read (%s); replaying instead", path,
                       exc)
        return None
    return (judge, frame) if fits else None


def rebuild(judge: _Judge, log: Any, start: int, cursor: int) -> int:
    """Judge the profiles of frames ``start..cursor`` from the ProfileLog ``log`` again;
    returns how many."""
    have = log.frames
    todo = have[(have >= start) & (have <= cursor)]
    for k in range(0, todo.size, 1024):  # bounded memory on long quiet stretches
        block = log.read(frames=todo[k: k + 1024])
        for f, i, s in zip(block.frame.values, block.intensity.values, block.sigma.values,
                           strict=True):
            judge.judge(int(f), i, s)
    return int(todo.size)


def restore(catalog: Any, dataset_id: str, log: Any, judge: _Judge, marker: Any, *,
            first: int, cursor: int, path: Path) -> _Judge:
    """After a restart: the changes recorded (for the marks), the marks given, and the
    detector as it was after frame ``cursor`` (from a checkpoint and the profiles after it,
    or from the profiles since it last started afresh). Returns the detector."""
    events = catalog.live_points(dataset_id, kinds="event")
    for p in events:
        marker.add_event(int(p.values["onset"]), int(p.values["end"]))
    marker.resume(m["frame"] for m in catalog.frame_marks(dataset_id))
    start = first
    if events:
        judge.restart_after(events[-1].frame)
        start = max(first, judge.hold_until + 1)
    if start > cursor:
        return judge
    t0 = time.perf_counter()
    saved = load(path, options=judge.options, start=start, cursor=cursor)
    if saved is not None:
        judge, last = saved
        start = last + 1
    n = rebuild(judge, log, start, cursor)
    logger.info("%s: detector rebuilt from %s%d recorded profiles (frames %d..%d) in %.2f s",
                dataset_id, "a checkpoint and " if saved else "", n, start, cursor,
                time.perf_counter() - t0)
    return judge


def refeed(catalog: Any, dataset_id: str, triggers: Any, *, since: int) -> None:
    """Hand the triggers the frames recorded after ``since`` again: a kill may have come
    between recording them and the triggers seeing them (the triggers read back their
    decisions, so none is taken twice)."""
    points = catalog.live_points(dataset_id, since=since, kinds=["features", "event"])
    events = {p.frame: p for p in points if p.kind == "event"}
    for p in points:
        if p.kind == "features":
            triggers.on_frame(p, event=events.get(p.frame))
