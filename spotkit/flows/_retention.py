"""Which source files a facility's clean-up may remove, and which redundant frames of a
series may move or age out: never spotkit's own decision, always after the validation the
facility configures (:class:`RetentionPolicy`, :class:`FrameRetention`)."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ._suitcase import (
    Manifest,
)

__all__ = ["FRAME_ACTIONS", "VALIDATIONS", "FramePlan", "FrameRetention", "RetentionPolicy"]

log = logging.getLogger("spotkit.flows._movers")



@dataclass(frozen=True)
class RetentionPolicy:
    """Which source files may be pruned: only old enough ones, verified at enough destinations.

    spotkit itself never deletes raw data; this policy only *answers* which files a
    facility's own clean-up may remove. The default (``keep_days=None``) never allows it.

    Parameters
    ----------
    keep_days : float or None
        Keep source files at least this many days after their mtime; None keeps them forever.
    require_verified_copies : int
        How many destinations must hold a verified copy (re-read and checksummed now).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.flows import LocalCopy, make_manifest
    >>> inbox, wh1, wh2 = (pathlib.Path(tempfile.mkdtemp()) for _ in range(3))
    >>> _ = (inbox / "scan.h5").write_bytes(b"raw detector bytes" * 100)
    >>> manifest = make_manifest(["scan.h5"], root=inbox, read_file_metadata=False)
    >>> dests = [LocalCopy(wh1), LocalCopy(wh2)]
    >>> RetentionPolicy().prunable(manifest, inbox, dests)  # the default keeps everything
    []
    >>> policy = RetentionPolicy(keep_days=0, require_verified_copies=2)
    >>> policy.prunable(manifest, inbox, dests)  # no verified copy anywhere yet
    []
    >>> _ = dests[0].transfer(manifest, inbox)
    >>> policy.prunable(manifest, inbox, dests)  # one copy, two required
    []
    >>> _ = dests[1].transfer(manifest, inbox)
    >>> [p.name for p in policy.prunable(manifest, inbox, dests)]
    ['scan.h5']
    >>> (inbox / "scan.h5").exists()  # the policy only answers; it never deletes
    True
    """

    keep_days: float | None = None
    require_verified_copies: int = 1

    def __post_init__(self):
        if self.keep_days is not None and self.keep_days < 0:
            raise ValueError(f"keep_days must be >= 0 or None, not {self.keep_days!r}")
        if self.require_verified_copies < 1:
            raise ValueError("require_verified_copies must be at least 1, not "
                             f"{self.require_verified_copies!r}")

    def prunable(self, manifest: Manifest, src_root, destinations, *,
                 now: datetime | None = None) -> list[Path]:
        """The source files that may be pruned now.

        A file qualifies when the policy allows pruning at all, its source still has the
        size and mtime of the manifest, it is older than ``keep_days``, and at least
        ``require_verified_copies`` of ``destinations`` hold it with the manifest's size and
        sha256 — re-verified by this call, not taken from a past record.

        Parameters
        ----------
        manifest : Manifest
        src_root : path-like
            The dataset root at the source.
        destinations : sequence of Mover
            Where copies should be; each is asked to ``verify`` (at its default dest).
        now : datetime, optional
            The current time (for tests); timezone-aware.

        Returns
        -------
        list of pathlib.Path
            Absolute source paths; empty when nothing may go.
        """
        if self.keep_days is None:
            return []
        src_root = Path(src_root)
        now = now or datetime.now(UTC)
        cutoff = (now - timedelta(days=self.keep_days)).timestamp()
        candidates = []
        for f in manifest.files:
            try:
                st = (src_root / f.path).stat()
            except OSError:
                continue
            if st.st_size != f.size or abs(st.st_mtime - f.mtime) > 1e-3 or st.st_mtime > cutoff:
                continue
            candidates.append(f.path)
        if not candidates:
            return []
        counts = dict.fromkeys(candidates, 0)
        for mover in destinations:
            wanted = set(candidates)
            sub = Manifest(manifest.dataset, tuple(f for f in manifest.files if f.path in wanted))
            bad = {p.path for p in mover.verify(sub)}
            for p in candidates:
                if p not in bad:
                    counts[p] += 1
        ok = [src_root / p for p in candidates if counts[p] >= self.require_verified_copies]
        log.info("retention for %s: %d of %d files may be pruned", manifest.id, len(ok),
                 len(manifest.files))
        return ok


# -- frames of a series marked redundant ---------------------------------------------------

#: what a facility may require before a redundant frame leaves the place it was written
VALIDATIONS = ("replica", "verdict", "approval")
FRAME_ACTIONS = ("move", "age_out")


@dataclass(frozen=True)
class FramePlan:
    """What :meth:`FrameRetention.plan` found (and :meth:`FrameRetention.apply` did).

    Attributes
    ----------
    dataset_id : str
    action : str
        ``"move"`` or ``"age_out"``.
    frames : tuple of int
        The frames that may go now (all validations hold, old enough).
    files : tuple of pathlib.Path
        Their files, in the same order.
    held : dict
        ``{frame: why it stays}`` for the other frames marked redundant.
    checks : dict
        ``{validation: (ok, what was found)}``.
    done : tuple of int
        The frames moved or aged out by this call (empty in a dry run).
    dry_run : bool
    """

    dataset_id: str
    action: str
    frames: tuple[int, ...]
    files: tuple[Path, ...]
    held: dict
    checks: dict
    done: tuple[int, ...] = ()
    dry_run: bool = True

    @property
    def validated(self) -> bool:
        """Whether every validation the facility asks for holds."""
        return all(ok for ok, _ in self.checks.values())


def _check_validations(validated_by) -> tuple[str, ...]:
    names = (validated_by,) if isinstance(validated_by, str) else tuple(validated_by)
    bad = [n for n in names if n not in VALIDATIONS]
    if bad or not names:
        raise ValueError(f"validated_by {list(names)!r}: give one or more of "
                         f"{list(VALIDATIONS)} (every one given must hold)")
    return names


@dataclass(frozen=True)
class FrameRetention:
    """Which frames marked redundant may move away or age out, and only after validation.

    Change detection marks frames of a series ``"redundant"`` (:meth:`Catalog.mark_frames`);
    a mark alone never removes anything. A frame of a frame folder (one file per frame)
    leaves the folder only when **every** validation in ``validated_by`` holds now and its
    file and mark are at least ``min_age_days`` old:

    * ``"replica"``: the series has a verified copy elsewhere (``location``, or any but the
      origin); a local copy is re-read now, frame by frame (same sha256 as the frame here);
    * ``"verdict"``: a quality check passed on the series or on a product made from it
      (:func:`spotkit.monitor.quality_verdict`);
    * ``"approval"``: a person approved it (:meth:`approve`, with a reason).

    ``action="move"`` copies the frame to ``dest`` (``<dest>/<dataset id>/<file name>``),
    checks the copy's sha256 and only then removes the original; ``"age_out"`` deletes it,
    and is refused unless ``"replica"`` is required (the only copy is never deleted). A
    series still being acquired is never touched. :meth:`apply` is a dry run unless told
    otherwise; every frame released is recorded with its reason, and which file held which
    frame is kept, so frame numbers stay right after files have gone. Frames inside one
    HDF5 file cannot leave it: the plan says so.

    Parameters
    ----------
    validated_by : str or sequence of str
        One or more of :data:`VALIDATIONS` (default ``("replica",)``).
    min_age_days : float
        Frames (their file and their mark) younger than this stay.
    action : {"move", "age_out"}
    dest : path-like, optional
        Where moved frames go (required for ``"move"``).
    location : str, optional
        The replica location that counts (default: any but ``"origin"``).
    dry_run : bool
        :meth:`apply` only reports unless told otherwise (default True). A rules file
        sets all of these in ``retention: frames:`` (:meth:`from_rules`).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_saxs_series, write_frame_folder
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_saxs_series(work / "s.h5", n_frames=6, shape=(32, 40), module_shape=None)
    >>> folder = write_frame_folder(work / "run_0001", work / "s.h5", fmt="tiff")
    >>> cat = open_catalog(work / "catalog.db")
    >>> series = cat.ingest(folder)
    >>> cat.mark_frames(series.id, [0, 1, 2], "redundant", reasons="no change")
    3
    >>> policy = FrameRetention(validated_by="approval", min_age_days=0, dest=work / "cold")
    >>> plan = policy.plan(cat, series.id)
    >>> plan.frames, plan.checks["approval"]
    ((), (False, 'nobody approved releasing its redundant frames'))
    >>> policy.approve(cat, series.id, by="beamline scientist", reason="reviewed the timeline")
    >>> plan = policy.apply(cat, series.id)          # a dry run: nothing moves
    >>> plan.frames, plan.done, (folder / "frame_00001.tif").exists()
    ((0, 1, 2), (), True)
    >>> plan = policy.apply(cat, series.id, dry_run=False)
    >>> plan.done, (folder / "frame_00001.tif").exists()
    ((0, 1, 2), False)
    >>> sorted(p.name for p in (work / "cold" / series.id).iterdir())
    ['frame_00001.tif', 'frame_00002.tif', 'frame_00003.tif']
    >>> [r["frame"] for r in policy.releases(cat, series.id)]
    [0, 1, 2]
    """

    validated_by: tuple[str, ...] = ("replica",)
    min_age_days: float = 30.0
    action: str = "move"
    dest: str | os.PathLike | None = None
    location: str | None = None
    dry_run: bool = True

    @classmethod
    def from_rules(cls, rules) -> FrameRetention | None:
        """The policy of a rules file's ``retention: frames:`` section (None without one).

        Examples
        --------
        >>> from spotkit.flows import load_rules
        >>> rules = load_rules('''
        ... targets: {local: {kind: local}}
        ... live: [{name: t, on: onset, actions: [{priority: {level: 1}}]}]
        ... retention:
        ...   frames: {validated_by: [replica, approval], min_age: 7d, action: age_out}
        ... ''')
        >>> FrameRetention.from_rules(rules)  # doctest: +NORMALIZE_WHITESPACE
        FrameRetention(validated_by=('replica', 'approval'), min_age_days=7.0,
                       action='age_out', dest=None, location=None, dry_run=True)
        """
        spec = ((rules.to_dict().get("retention") or {}).get("frames")
                if hasattr(rules, "to_dict") else None)
        if spec is None:
            return None
        from spotkit.monitor import parse_duration

        return cls(validated_by=tuple(spec["validated_by"]),
                   min_age_days=parse_duration(spec["min_age"]) / 86400.0,
                   action=spec["action"], dest=spec.get("dest"),
                   location=spec.get("location"), dry_run=bool(spec.get("dry_run", True)))

    def __post_init__(self) -> None:
        object.__setattr__(self, "validated_by", _check_validations(self.validated_by))
        if self.action not in FRAME_ACTIONS:
            raise ValueError(f"action {self.action!r}: choose one of {list(FRAME_ACTIONS)}")
        if self.action == "move" and self.dest is None:
            raise ValueError("action 'move' needs dest: the folder the frames move to")
        if self.action == "age_out" and "replica" not in self.validated_by:
            raise ValueError("action 'age_out' deletes frames: validated_by must include "
                             "'replica' (a verified copy elsewhere), so no frame's only copy "
                             "is ever deleted")
        if not self.min_age_days >= 0:
            raise ValueError(f"min_age_days must be >= 0, not {self.min_age_days!r}")

    # -- records ------------------------------------------------------------------------

    @staticmethod
    def _journal(catalog):
        from spotkit.flows._journal import Journal

        return Journal(catalog.path)  # a SQLite file or the postgresql:// URL

    def approve(self, catalog, dataset_id, *, by: str, reason: str) -> None:
        """Record that ``by`` approves releasing the series' redundant frames (``reason``)."""
        ds_id = str(getattr(dataset_id, "id", dataset_id))
        if not (isinstance(by, str) and by.strip() and isinstance(reason, str)
                and reason.strip()):
            raise ValueError("an approval needs who (by=) and why (reason=)")
        catalog[ds_id]  # an unknown series raises DatasetNotFoundError
        with self._journal(catalog) as journal, journal._write(f"approving {ds_id}") as conn:
            conn.execute("INSERT INTO frame_approvals (dataset_id, approved_by, reason, "
                         "approved_at) VALUES (?, ?, ?, ?)",
                         (ds_id, by.strip(), reason.strip(), time.time()))
        log.info("event=frames_approved dataset=%s by=%s reason=%s", ds_id, by, reason)

    def releases(self, catalog, dataset_id) -> list[dict]:
        """The frames of a series released so far: ``frame``, ``path``, ``action``,
        ``dest``, ``sha256``, ``reason``, ``released_by``, ``released_at``."""
        keys = ("frame", "path", "action", "dest", "sha256", "reason", "released_by",
                "released_at")
        with self._journal(catalog) as journal:
            rows = journal._read(f"SELECT {', '.join(keys)} FROM frame_releases "  # noqa: S608
                                 "WHERE dataset_id = ? ORDER BY frame",
                                 (str(getattr(dataset_id, "id", dataset_id)),))
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- the plan -----------------------------------------------------------------------

    def plan(self, catalog, dataset_id, *, now: float | None = None) -> FramePlan:
        """Which frames marked redundant may go now, which stay and why (nothing changes)."""
        with self._journal(catalog) as journal:
            return self._plan(catalog, journal, str(getattr(dataset_id, "id", dataset_id)),
                              time.time() if now is None else now)[0]

    def _plan(self, catalog, journal, ds_id: str, now: float
              ) -> tuple[FramePlan, dict[int, Path], Path | None]:
        ds = catalog[ds_id]
        marks = catalog.frame_marks(ds_id, label="redundant")
        released = {r[0] for r in journal._read(
            "SELECT frame FROM frame_releases WHERE dataset_id = ?", (ds_id,))}
        wanted = [m for m in marks if m["frame"] not in released]
        checks: dict[str, tuple[bool, str]] = {}
        held: dict[int, str] = {}

        def plan(frames=(), files=()):
            return FramePlan(ds_id, self.action, tuple(frames), tuple(files), held, checks)

        def hold_all(why: str):
            held.update({m["frame"]: why for m in wanted})
            return plan(), {}, None

        if any(s.get("dataset_id") == ds_id for s in catalog.live_series(active=True)):
            return hold_all("the series is still being acquired")
        if ds.status == "superseded":  # a live series, ingested again when it was finished
            why = (ds.metadata or {}).get("status_reason") or "by another dataset"
            return hold_all(f"superseded ({why}): release the frames of the dataset that "
                            "replaced it")
        primary = ds.primary_file
        folder = Path(primary.registered_path) if primary is not None else None
        if folder is None or not folder.is_dir():
            name = folder.name if folder is not None else ds_id
            return hold_all(f"its frames are inside one file ({name}): a frame cannot leave "
                            "it on its own (only a frame folder's files can)")
        files = self._frame_files(journal, ds, folder)
        if isinstance(files, str):
            return hold_all(files)
        replica_root = None
        for check in self.validated_by:
            ok, text, root = getattr(self, f"_{check}")(catalog, journal, ds)
            checks[check] = (ok, text)
            replica_root = root if check == "replica" else replica_root
        if not all(ok for ok, _ in checks.values()):
            failed = "; ".join(f"{k}: {t}" for k, (ok, t) in checks.items() if not ok)
            return (*hold_all(f"not validated ({failed})")[:2], replica_root)
        cutoff = now - 86400.0 * self.min_age_days
        ok_frames, ok_files = [], []
        for m in wanted:
            f = m["frame"]
            path = files.get(f)
            if path is None or not path.is_file():
                held[f] = f"no file for frame {f} in {folder}"
                continue
            marked = m["marked_at"].timestamp() if m["marked_at"] is not None else now
            if path.stat().st_mtime > cutoff or marked > cutoff:
                held[f] = f"younger than {self.min_age_days:g} days"
                continue
            ok_frames.append(f)
            ok_files.append(path)
        return plan(ok_frames, ok_files), files, replica_root

    def _frame_files(self, journal, ds, folder: Path) -> dict[int, Path] | str:
        rows = journal._read("SELECT frame, path FROM frame_files WHERE dataset_id = ?",
                             (ds.id,))
        if rows:
            return {int(f): Path(p) for f, p in rows}
        from spotkit.io import open_saxs

        try:
            names = [str(x) for x in open_saxs(folder).coords["file"].values]
        except Exception as exc:
            return f"its frames cannot be listed ({type(exc).__name__}: {exc})"
        expected = (ds.metadata or {}).get("n_frames")
        if expected is not None and int(expected) != len(names):
            return (f"{folder} holds {len(names)} frame files but the catalog recorded "
                    f"{expected}: which file is which frame cannot be told")
        return {i: Path(n) for i, n in enumerate(names)}

    # -- validations: (ok, what was found, root of a local verified copy) ----------------

    def _replica(self, catalog, journal, ds):
        primary = ds.primary_file
        registered = Path(primary.registered_path)
        local_at = {rep.location for rep in catalog.replicas(ds.id).get(registered, ())
                    if rep.location != "origin" and rep.local}
        for location in sorted(local_at):
            if self.location in (None, location):
                catalog.verify_replicas(ds.id, location)  # re-read now
        for rep in catalog.replicas(ds.id).get(registered, ()):
            if rep.location == "origin" or self.location not in (None, rep.location):
                continue
            if rep.state == "verified":
                where = f"verified copy at {rep.location} ({rep.path})"
                return True, where, Path(rep.path) if rep.local else None
        want = f"at {self.location}" if self.location else "anywhere but the origin"
        return False, f"no verified copy {want}", None

    def _verdict(self, catalog, journal, ds):
        from spotkit.monitor import quality_verdict

        for candidate in [ds, *ds.children]:
            v = quality_verdict(catalog, candidate)
            if v is not None and v.verdict == "pass":
                return True, f"quality check passed on {candidate.id}", None
        return False, "no passed quality check on the series or its products", None

    def _approval(self, catalog, journal, ds):
        rows = journal._read("SELECT approved_by, reason FROM frame_approvals WHERE "
                             "dataset_id = ? ORDER BY approved_at DESC", (ds.id,))
        if rows:
            return True, f"approved by {rows[0][0]}: {rows[0][1]}", None
        return False, "nobody approved releasing its redundant frames", None

    # -- acting -------------------------------------------------------------------------

    def apply(self, catalog, dataset_id, *, dry_run: bool | None = None, by: str | None = None,
              now: float | None = None) -> FramePlan:
        """Plan, then (unless a dry run: ``dry_run``, default the policy's) move or age out
        the frames that may go.

        Each frame is handled on its own: checked against the verified copy (when it is
        local), copied and checked at ``dest`` (``move``), removed here, and recorded with
        its reason; a frame that fails stays, with the reason in ``held``.

        Returns
        -------
        FramePlan
            With ``done``: the frames released by this call.
        """
        from spotkit.checksums import sha256_file

        dry_run = self.dry_run if dry_run is None else bool(dry_run)
        ds_id = str(getattr(dataset_id, "id", dataset_id))
        with self._journal(catalog) as journal:
            plan, files, replica_root = self._plan(
                catalog, journal, ds_id, time.time() if now is None else now)
            log.info("frame retention for %s: %d frame(s) may %s, %d held%s", ds_id,
                     len(plan.frames), self.action.replace("_", " "), len(plan.held),
                     " (dry run)" if dry_run else "")
            if dry_run or not plan.frames:
                return plan
            with journal._write(f"keeping the frame files of {ds_id}") as conn:
                conn.executemany(
                    "INSERT INTO frame_files (dataset_id, frame, path) VALUES (?, ?, ?) "
                    "ON CONFLICT (dataset_id, frame) DO NOTHING",
                    [(ds_id, f, str(p)) for f, p in files.items()])
            reason = "; ".join(f"{k}: {t}" for k, (_ok, t) in plan.checks.items())
            held, done = dict(plan.held), []
            for frame, path in zip(plan.frames, plan.files, strict=True):
                try:
                    sha = sha256_file(path)
                    if replica_root is not None:
                        copy = replica_root / path.name
                        if not copy.is_file() or sha256_file(copy) != sha:
                            held[frame] = f"the verified copy {copy} does not hold this frame"
                            continue
                    dest = self._release(ds_id, path, sha)
                except OSError as exc:
                    held[frame] = f"{type(exc).__name__}: {exc}"
                    log.warning("frame %d of %s stays: %s", frame, ds_id, exc)
                    continue
                with journal._write(f"recording frame {frame} of {ds_id}") as conn:
                    conn.execute(
                        "INSERT INTO frame_releases (dataset_id, frame, path, action, dest, "
                        "sha256, reason, released_by, released_at) VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (ds_id, frame, str(path), self.action, dest, sha, reason, by,
                         time.time()))
                done.append(frame)
                log.info("event=frame_released dataset=%s frame=%d action=%s dest=%s", ds_id,
                         frame, self.action, dest)
            if done:  # the folder here is no longer the whole series: readers use the copy
                where = f"moved to {self.dest}" if self.action == "move" else "aged out"
                catalog.mark_replicas(ds_id, "origin", "unverified", detail=(
                    f"{len(done)} redundant frame(s) {where} by frame retention ({reason})"))
        return dataclasses.replace(plan, held=held, done=tuple(done), dry_run=False)

    def _release(self, ds_id: str, path: Path, sha: str) -> str | None:
        """Move (copy, check, then remove) or delete one frame file; the new path or None."""
        from spotkit.checksums import sha256_file

        if self.action == "age_out":
            path.unlink()
            return None
        folder = Path(self.dest) / ds_id  # type: ignore[arg-type]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / path.name
        partial = target.with_name(target.name + ".partial")
        shutil.copy2(path, partial)
        if sha256_file(partial) != sha:
            partial.unlink()
            raise OSError(f"the copy of {path.name} at {folder} does not match it")
        os.replace(partial, target)
        path.unlink()
        return str(target)
