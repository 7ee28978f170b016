"""The matplotlib figures of :class:`~spotkit.widgets.ChangeTimeline`, as PNG bytes.

The plots are drawn by matplotlib's Agg canvas on figures made once and updated in place
(no pyplot, no global state), so a frame renders in a fraction of a second and the same
frame always gives the same bytes. Plain Python (no ipywidgets): every value drawn comes
from a :class:`~spotkit.widgets.ChangeTimelineModel`.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from spotkit.widgets._change_timeline_model import ChangeTimelineModel

__all__ = ["Panels"]


def _figure(width: float, height: float, dpi: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig, *, freeze: bool = True) -> bytes:
    """The figure as PNG bytes. ``freeze``: after this first drawing, keep the layout (the
    constrained-layout solver is the slowest part of a redraw and the layout does not
    change from frame to frame)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None},
                pil_kwargs={"compress_level": 1})
    if freeze and fig.get_layout_engine() is not None:
        fig.set_layout_engine("none")
    return buf.getvalue()


class Panels:
    """The matplotlib figures of the view, made once and updated in place."""

    def __init__(self, model: ChangeTimelineModel, *, cmap: str, map_cmap: str, dpi: int):
        from matplotlib import colormaps
        from matplotlib.colors import LogNorm, Normalize

        self.model = model
        self.dpi = dpi
        ny, nx = model.frame_shape
        aspect = ny / nx
        panel_w = 3.6
        img_h = max(1.6, min(3.6, panel_w * aspect + 0.9))

        # detector image: log scale, one grey range for every frame
        lo, hi = self._grey_range()
        self.image_fig = fig = _figure(panel_w, img_h, dpi)
        ax = fig.add_subplot()
        self.image_ax = ax
        grey = colormaps[cmap].with_extremes(bad="#d0d0ff")  # gaps and masked pixels
        self.image_art = ax.imshow(np.ones((ny, nx)), cmap=grey, origin="upper",
                                   norm=LogNorm(vmin=lo, vmax=hi, clip=True),
                                   interpolation="nearest")
        fig.colorbar(self.image_art, ax=ax, label="counts", shrink=0.8)
        self._tidy_image_axes(ax)

        # change map: diverging, symmetric, one range for every frame
        lim = self._map_range()
        self.map_fig = fig = _figure(panel_w, img_h, dpi)
        ax = fig.add_subplot()
        self.map_ax = ax
        self.map_norm = Normalize(vmin=-lim, vmax=lim)
        diverging = colormaps[map_cmap].with_extremes(bad="#e0e0e0")
        self.map_art = ax.imshow(np.zeros((ny, nx)), cmap=diverging, norm=self.map_norm,
                                 origin="upper", interpolation="nearest",
                                 extent=(-0.5, nx - 0.5, ny - 0.5, -0.5))
        fig.colorbar(self.map_art, ax=ax, label="change (noise σ)", shrink=0.8)
        self._tidy_image_axes(ax)
        self.map_line: Any = None  # for maps in q (results on profiles)

        # I(q), log-log, with the reference
        self.profile_fig = fig = _figure(panel_w, img_h, dpi)
        ax = self.profile_ax = fig.add_subplot()
        ax.set_xscale("log")
        ax.set_yscale("log")
        (self.ref_line,) = ax.plot([], [], color="0.6", lw=1.2,
                                   label=f"reference (frames 0..{model.warmup - 1})")
        (self.profile_line,) = ax.plot([], [], color="tab:red", lw=1.2, label="frame")
        ax.tick_params(labelsize=7)
        ax.set_ylabel("I(q)", fontsize=8)
        self._profile_ready = False

        # timeline
        self.timeline_fig = fig = _figure(11.0, 2.6, dpi)
        self.timeline_ax = fig.add_subplot()
        self.current_line: Any = None
        self._feature: str | None = None

    def _grey_range(self) -> tuple[float, float]:
        m = self.model
        parts = [m.reference]
        parts += [m.image(e.end).astype(np.float64) for e in m.events[:3]]
        valid = np.concatenate([p[p >= 0].ravel() if m.mask is None
                                else p[(p >= 0) & ~m.mask].ravel() for p in parts])
        pos = valid[valid > 0]
        if pos.size == 0:
            return 0.5, 1.0
        lo, hi = np.percentile(pos, [1, 99.9])
        lo = max(float(lo), 0.5)
        return lo, max(float(hi), 2 * lo)

    def _map_range(self) -> float:
        lim = 5.0
        for e in self.model.events:
            if e.change_map is not None:
                vals = np.abs(np.asarray(e.change_map.values, dtype=np.float64))
                if np.isfinite(vals).any():
                    lim = max(lim, float(np.nanpercentile(vals, 99.5)))
        return lim

    @staticmethod
    def _tidy_image_axes(ax) -> None:
        ax.tick_params(labelsize=7)
        ax.set_xlabel("x (px)", fontsize=8)
        ax.set_ylabel("y (px)", fontsize=8)

    # -- per frame --------------------------------------------------------------------------

    def image_png(self, frame: int) -> bytes:
        img = self.model.image(frame)
        shown = np.ma.masked_less(img.astype(np.float64), 0)
        if self.model.mask is not None:
            shown = np.ma.masked_where(self.model.mask, shown)
        shown = np.ma.maximum(shown, self.image_art.norm.vmin)
        self.image_art.set_data(shown)
        self.image_ax.set_title(f"frame {frame}", fontsize=9)
        return _png(self.image_fig)

    def map_png(self, frame: int) -> bytes:
        m = self.model.change_map(frame)
        ax = self.map_ax
        values = np.asarray(m.values, dtype=np.float64)
        if m.ndim == 2:
            ys = np.asarray(m[m.dims[0]].values) if m.dims[0] in m.coords else None
            xs = np.asarray(m[m.dims[1]].values) if m.dims[1] in m.coords else None
            ny, nx = values.shape
            if ys is not None and xs is not None and ny > 0 and nx > 0:
                dy = ys[1] - ys[0] if ny > 1 else 1.0
                dx = xs[1] - xs[0] if nx > 1 else 1.0
                extent = (xs[0] - dx / 2, xs[-1] + dx / 2, ys[-1] + dy / 2, ys[0] - dy / 2)
            else:
                extent = (-0.5, nx - 0.5, ny - 0.5, -0.5)
            self.map_art.set_data(np.ma.masked_invalid(values))
            self.map_art.set_extent(extent)
            self.map_art.set_visible(True)
            if self.map_line is not None:
                self.map_line.set_visible(False)
        else:  # a map in q
            q = np.asarray(m[m.dims[0]].values) if m.dims[0] in m.coords else \
                np.arange(values.size)
            self.map_art.set_visible(False)
            if self.map_line is None:
                (self.map_line,) = ax.plot(q, values, color="tab:purple", lw=1.2)
            self.map_line.set_data(q, values)
            self.map_line.set_visible(True)
            ax.set_xlim(float(np.nanmin(q)), float(np.nanmax(q)))
            lim = float(self.map_norm.vmax or 1.0)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("auto")
            ax.set_xlabel(m.dims[0], fontsize=8)
        ax.set_title(str(m.attrs.get("source", f"frame {frame}")), fontsize=8)
        return _png(self.map_fig)

    def profile_png(self, frame: int) -> bytes | None:
        prof = self.model.profile(frame)
        if prof is None:
            return None
        ax = self.profile_ax
        rdim = prof["intensity"].dims[0]
        q = np.asarray(prof[rdim].values, dtype=np.float64)
        iq = np.asarray(prof["intensity"].values, dtype=np.float64)
        ok = np.isfinite(iq) & (iq > 0) & (q > 0)
        if not self._profile_ready:
            ref = self.model.reference_profile()
            rq = np.asarray(ref[rdim].values, dtype=np.float64)
            ri = np.asarray(ref["intensity"].values, dtype=np.float64)
            rok = np.isfinite(ri) & (ri > 0) & (rq > 0)
            self.ref_line.set_data(rq[rok], ri[rok])
            units = prof[rdim].attrs.get("units", "")
            ax.set_xlabel(f"{rdim} ({units})" if units else rdim, fontsize=8)
            ax.legend(fontsize=7, frameon=False, loc="upper right")
            self._ref_ylim = (float(ri[rok].min()), float(ri[rok].max())) if rok.any() \
                else (1.0, 10.0)
            self._profile_ready = True
        self.profile_line.set_data(q[ok], iq[ok])
        lo, hi = self._ref_ylim
        if ok.any():
            lo, hi = min(lo, float(iq[ok].min())), max(hi, float(iq[ok].max()))
            ax.set_xlim(float(q[ok].min()) * 0.95, float(q[ok].max()) * 1.05)
        ax.set_ylim(lo / 1.5, hi * 1.5)
        ax.set_title(f"I(q) of frame {frame}", fontsize=9)
        return _png(self.profile_fig)

    # -- timeline -----------------------------------------------------------------------------

    def draw_timeline(self, feature: str) -> None:
        """Redraw the timeline axes for a feature (not needed when only the frame moves)."""
        m = self.model
        ax = self.timeline_ax
        ax.clear()
        self.timeline_fig.set_layout_engine("constrained")  # the y label may be wider
        frames = np.arange(m.n_frames)
        values = m.feature(feature)
        if m.plan is not None:
            for a, b in m.plan.windows:
                ax.axvspan(a - 0.5, b + 0.5, color="tab:orange", alpha=0.15, lw=0)
            kept = np.flatnonzero(m.plan.keep)
            ax.plot(kept, np.full(kept.size, 0.02), "|", color="tab:green", ms=8,
                    transform=ax.get_xaxis_transform(), label="kept")
            ax.axvspan(np.nan, np.nan, color="tab:orange", alpha=0.15, lw=0,
                       label=f"of interest ({m.plan.reduction_factor:.1f}x reduction)")
        ax.plot(frames, values, ".-", color="0.25", lw=1, ms=3, label=feature)
        for i, event in enumerate(m.events):
            ax.axvline(event.onset, color="tab:blue", lw=1.2, ls="--",
                       label="onset" if i == 0 else None)
            ax.text(event.onset, 0.97, f" onset {event.onset} ({event.confidence:.2f})",
                    transform=ax.get_xaxis_transform(), va="top", ha="left", fontsize=7,
                    color="tab:blue")
        self.current_line = ax.axvline(m.selected, color="tab:red", lw=1.5, alpha=0.8,
                                       label="selected")
        ax.set_xlim(-0.5, m.n_frames - 0.5)
        ax.set_xlabel("frame", fontsize=8)
        ax.set_ylabel(feature, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0),
                  ncols=6, borderaxespad=0.2)
        self._feature = feature

    def timeline_png(self, feature: str, frame: int) -> bytes:
        if feature != self._feature:
            self.draw_timeline(feature)
        self.current_line.set_xdata([frame, frame])
        return _png(self.timeline_fig)
