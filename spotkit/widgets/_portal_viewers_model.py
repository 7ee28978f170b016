"""Which viewer shows a dataset, and loading it: the plain-Python side of the Viewers panel.

:func:`viewers_for` maps a dataset kind to the viewers that show it: the slice viewer
(:class:`~spotkit.widgets.SliceViewerModel`) for tomography volumes and for a raw scan's
projections, the frame and I(q) viewer (:class:`~spotkit.widgets.ChangeTimelineModel`) for
scattering series, the centre-of-rotation finder (:class:`~spotkit.widgets.CenterFinder`)
for a raw tomography scan. :class:`ViewerPanelModel` holds the selected dataset and loads it
(catalog look-up, files opened, first images read) in :meth:`ViewerPanelModel.load`, which
the portal runs in its background thread; no ipywidgets here.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from spotkit import kinds

logger = logging.getLogger(__name__)

__all__ = ["VIEWERS", "ViewerPanelModel", "ViewerSnapshot", "viewers_for"]

#: Viewer name -> what it shows.
VIEWERS = {
    "slice": "three orthogonal planes of a volume, or of a raw scan's projections",
    "frames": "detector frames of a scattering series with their change features and I(q)",
    "iq": "I(q) profiles of a reduced scattering series",
    "center": "centre of rotation of a raw tomography scan",
}

_BY_KIND = {
    kinds.TOMO_RAW: ("slice", "center"),
    kinds.TOMO_RECON: ("slice",),
    kinds.TOMO_SLICES: ("slice",),
    kinds.SAXS_RAW: ("frames",),
    kinds.SAXS_IQ: ("iq",),
    kinds.SAXS_REDUCED: ("iq",),
}


def viewers_for(kind: str) -> tuple[str, ...]:
    """The viewers of a dataset kind, the first one shown first.

    Derived kinds that no rule names (``"tomo/segmented"``...) get the slice viewer when
    their data is a 3-D array (checked when loading). Reports have none.

    Examples
    --------
    >>> viewers_for("tomo/raw"), viewers_for("saxs/raw"), viewers_for("saxs/change-report")
    (('slice', 'center'), ('frames',), ())
    """
    if kind in _BY_KIND:
        return _BY_KIND[kind]
    if kind == kinds.SAXS_CHANGE_REPORT or kind == kinds.UNKNOWN:
        return ()
    return ("slice",)


@dataclass
class ViewerSnapshot:
    """What the panel shows for one dataset (made in the background thread).

    Attributes
    ----------
    dataset_id : str
    kind : str
    title : str
        One line: id, kind, sample.
    viewers : tuple of str
        The viewers, in order.
    models : dict
        Viewer name -> its loaded model (``"slice"``: SliceViewerModel with its first
        images rendered, ``"frames"``/``"iq"``: ChangeTimelineModel, or for ``"iq"``
        without frames the I(q) Dataset; ``"center"``: the Dataset, loaded on demand).
    errors : dict
        Viewer name -> why it cannot show this dataset.
    seconds : float
        Time spent loading.
    """

    dataset_id: str
    kind: str
    title: str
    viewers: tuple[str, ...]
    models: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class ViewerPanelModel:
    """The selected dataset and its loaded viewers.

    Parameters
    ----------
    catalog : spotkit Catalog
        Where datasets are looked up (``catalog[dataset_id]``).
    display : int
        Pixels of a slice viewer pane.
    slice_options : dict, optional
        More keyword arguments of :class:`~spotkit.widgets.SliceViewerModel`.
    max_read_bytes : int
        Planes that would read more storage are not read when loading (see
        :class:`~spotkit.widgets.SliceViewer`).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_tomo_scan
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(work / "scan.h5", shape=(31, 4, 32), seed=0)
    >>> cat = open_catalog(work / "catalog.db")
    >>> ds = cat.ingest(work / "scan.h5")
    >>> model = ViewerPanelModel(cat, display=64)
    >>> model.select(ds.id)
    >>> snap = model.load()
    >>> snap.viewers, snap.models["slice"].volume.axes[0].name
    (('slice', 'center'), 'angle')
    """

    def __init__(self, catalog: Any, *, display: int = 384,
                 slice_options: dict[str, Any] | None = None, max_read_bytes: int = 2**30):
        self.catalog = catalog
        self.max_read_bytes = int(max_read_bytes)
        self.display = int(display)
        self.slice_options = dict(slice_options or {})
        self._pending: str | None = None
        self._lock = threading.Lock()
        self.current: ViewerSnapshot | None = None

    def select(self, dataset_id: str) -> None:
        """Show ``dataset_id`` next (loaded by the next :meth:`load`; no I/O here)."""
        if not isinstance(dataset_id, str) or not dataset_id:
            raise ValueError(f"dataset_id must be a non-empty string, not {dataset_id!r}")
        with self._lock:
            self._pending = dataset_id

    @property
    def pending(self) -> str | None:
        """The dataset selected but not loaded yet."""
        return self._pending

    def load(self) -> ViewerSnapshot | None:
        """Load the pending dataset (all I/O): None when nothing new was selected.

        A viewer that cannot open the dataset records why in ``errors``; a dataset the
        catalog does not have raises :class:`KeyError` (the panel shows it).
        """
        with self._lock:
            dataset_id, self._pending = self._pending, None
        if dataset_id is None:
            return None
        t0 = time.perf_counter()
        ds = self.catalog[dataset_id]
        names = viewers_for(ds.kind)
        title = " · ".join(str(v) for v in (ds.id, ds.kind, ds.sample, ds.beamline) if v)
        snap = ViewerSnapshot(ds.id, ds.kind, title, names)
        for name in names:
            try:
                snap.models[name] = getattr(self, f"_load_{name}")(ds)
            except Exception as exc:
                logger.warning("viewer %s cannot show %s: %s", name, ds.id, exc)
                snap.errors[name] = f"{type(exc).__name__}: {exc}"
        snap.seconds = time.perf_counter() - t0
        self.current = snap  # the view closes the previous one's files when it replaces it
        return snap

    # -- one loader per viewer ---------------------------------------------------------

    def _load_slice(self, ds) -> Any:
        from spotkit.widgets._slice_viewer_model import SliceViewerModel

        model = SliceViewerModel(ds, display=self.display, **self.slice_options)
        for ax in range(3):  # the first images, read here (not in the kernel's thread)
            if model.read_bytes(ax, coarse=True) <= self.max_read_bytes:
                model.render(ax)  # (a costly plane waits for a click in the view)
        return model

    def _load_frames(self, ds) -> Any:
        from spotkit.io import load_geometry, open_saxs
        from spotkit.widgets._change_timeline_model import ChangeTimelineModel

        if getattr(ds, "path", None) is None and hasattr(ds, "to_xarray"):
            frames = ds.to_xarray()  # a remote catalog's dataset: read through the server
            integrator = None  # the geometry file stays on the server
        else:
            frames = open_saxs(ds.path)
            poni = frames.attrs.get("geometry_file") or frames.attrs.get("poni_path")
            integrator = load_geometry(poni) if poni else None
        model = ChangeTimelineModel(frames, integrator=integrator,
                                    warmup=min(8, int(frames.shape[0])))
        _warm(model)
        return model

    def _load_iq(self, ds) -> Any:
        from spotkit.io import open_saxs, read_nxcansas
        from spotkit.widgets._change_timeline_model import ChangeTimelineModel

        profiles = read_nxcansas(ds.path)
        raw = [p for p in ds.parents if p.kind == kinds.SAXS_RAW]
        series_dim = next((d for d in profiles.dims if d != "q"), None)
        if raw and series_dim is not None:
            frames = open_saxs(raw[0].path)
            profiles = profiles.rename({series_dim: "frame"})
            if profiles.sizes["frame"] == frames.shape[0]:
                model = ChangeTimelineModel(frames, profiles=profiles,
                                            warmup=min(8, int(frames.shape[0])))
                _warm(model)
                return model
        return profiles  # no frames to go with: the profiles alone

    def _load_center(self, ds) -> Any:
        return ds  # the centre sweep reconstructs dozens of slices: made on demand

    def close(self) -> None:
        """Close the files of the current dataset's viewers."""
        if self.current is not None:
            close_models(self.current)


def close_models(snap: ViewerSnapshot) -> None:
    """Close what a snapshot's models hold open."""
    for model in snap.models.values():
        close = getattr(model, "close", None)
        if callable(close) and type(model).__name__ == "SliceViewerModel":
            close()


def _warm(model) -> None:
    """Read the first frame's image, change map and profile (cached by the model)."""
    model.image(0)
    model.change_map(0)
    if model.has_profiles:
        model.profile(0)
