"""The matplotlib figures of :class:`~spotkit.widgets.LiveTimeline`, as PNG bytes.

Drawn as :class:`~spotkit.widgets.ChangeTimeline`'s are (its figure and PNG helpers, its
colours: the feature in grey, onsets as dashed blue lines with their confidence, flagged
frames shaded orange), on figures made once: the timeline (a feature against frame, and
below it on the same frame axis a fitted parameter with its error bars) and the latest I(q)
with the fit curve. Plain Python (no ipywidgets): every value drawn comes from a
:class:`~spotkit.widgets.LiveTimelineModel`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spotkit.widgets._change_timeline_plots import _figure, _png
from spotkit.widgets._live_timeline_model import LiveTimelineModel

__all__ = ["LivePlots", "flagged_spans"]


#: onsets labelled with their frame and confidence (the newest; older ones are lines only)
_LABELLED = 12
#: points drawn with markers at most (beyond, a line: the markers would hide each other)
_MARKERS = 2000


def flagged_spans(frames: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive frames, as ``(first, last)`` pairs.

    Examples
    --------
    >>> flagged_spans(np.array([3, 4, 5, 9, 11, 12]))
    [(3, 5), (9, 9), (11, 12)]
    """
    spans: list[tuple[int, int]] = []
    for f in (int(x) for x in frames):
        if spans and f == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], f)
        else:
            spans.append((f, f))
    return spans


def _spans_decades(values: np.ndarray, decades: float = 3.0) -> bool:
    """All finite values positive and over more than ``decades`` decades."""
    v = values[np.isfinite(values)]
    return bool(v.size > 1 and v.min() > 0 and np.log10(v.max() / v.min()) > decades)


class LivePlots:
    """The timeline and the I(q) figure of a live series, redrawn in place."""

    def __init__(self, model: LiveTimelineModel, *, dpi: int = 80):
        self.model = model
        self.dpi = dpi
        self.timeline_fig = _figure(11.0, 4.2, dpi)
        self.feature_ax, self.fit_ax = self.timeline_fig.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
        self.profile_fig = _figure(4.6, 3.4, dpi)
        self.profile_ax = self.profile_fig.add_subplot()
        self._choice: Any = None
        self._profile_ready: Any = False  # the x label the I(q) axes are set up for
        self._band: Any = None
        self._points: Any = None
        self._curve: Any = None
        self._profile_key: Any = None
        self._profile_png = b""

    # -- the timeline ---------------------------------------------------------------------

    def timeline_png(self, feature: str | None, fit: tuple[str, str] | None = None,
                     *, selected: int | None = None) -> bytes:
        """The feature against frame (onsets, flagged frames) over the fitted parameter
        ``fit = (model, parameter)`` with its error bars; ``selected`` marks a frame."""
        m = self.model
        ax, fax = self.feature_ax, self.fit_ax
        ax.clear()
        fax.clear()
        if (feature, fit) != self._choice:  # labels change: lay the figure out again
            self.timeline_fig.set_layout_engine("constrained")
            self._choice = (feature, fit)
        n = max(m.n_frames, 1)
        spans = [(a - 0.5, b - a + 1.0) for a, b in flagged_spans(m.flagged)]
        if spans:  # one collection per axes, however many runs
            for a in (ax, fax):
                a.broken_barh(spans, (0, 1), transform=a.get_xaxis_transform(),
                              color="tab:orange", alpha=0.18, lw=0)
            ax.axvspan(np.nan, np.nan, color="tab:orange", alpha=0.18, lw=0, label="flagged")
        kept = m.of_interest
        if kept.size:  # the reduction policy's advice: these frames matter
            ax.plot(kept, np.full(kept.size, 0.02), "|", color="tab:green", ms=8,
                    transform=ax.get_xaxis_transform(), label="of interest")
        if feature is not None and feature in m.feature_names:
            frames, values = m.feature(feature)
            # markers while they can be told apart; a long series is a line
            ax.plot(frames, values, ".-" if frames.size <= _MARKERS else "-", color="0.25",
                    lw=1, ms=3, label=feature)
            ax.set_ylabel(feature, fontsize=8)
            if _spans_decades(values):  # e.g. the difference: ~1 at rest, 1e5 at a change
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "waiting for the first frames…", transform=ax.transAxes,
                    ha="center", va="center", fontsize=9, color="0.4")
        onsets = [e["onset"] for e in m.events]
        if onsets:  # one collection per axes; the newest onsets labelled
            for a in (ax, fax):
                a.vlines(onsets, 0, 1, transform=a.get_xaxis_transform(), color="tab:blue",
                         lw=1.2, ls="--", label="onset" if a is ax else None)
            for event in m.events[-_LABELLED:]:
                conf = event["confidence"]
                text = f" onset {event['onset']}" + (f" ({conf:.2f})" if conf == conf else "")
                ax.text(event["onset"], 0.97, text, transform=ax.get_xaxis_transform(),
                        va="top", ha="left", fontsize=7, color="tab:blue")
        if m.decisions:
            at = [d["frame"] for d in m.decisions]
            ax.plot(at, np.full(len(at), 0.03), "v", color="tab:purple", ms=6, ls="none",
                    transform=ax.get_xaxis_transform(), label="decision")
        if selected is not None:
            ax.axvline(selected, color="tab:red", lw=1.5, alpha=0.8, label="selected")
        self._draw_fit(fit)
        ax.set_xlim(-0.5, n - 0.5)
        fax.set_xlabel("frame", fontsize=8)
        for a in (ax, fax):
            a.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0),
                      ncols=6, borderaxespad=0.2)
        return _png(self.timeline_fig)

    def _draw_fit(self, fit: tuple[str, str] | None) -> None:
        m, fax = self.model, self.fit_ax
        if fit is None or fit[0] not in m.fit_models:
            fax.text(0.5, 0.5, "no model fit yet (a `fit` rule streams them here)",
                     transform=fax.transAxes, ha="center", va="center", fontsize=8,
                     color="0.4")
            fax.set_yticks([])
            return
        model, parameter = fit
        frames, values, errors = m.fit(model, parameter)
        ok = np.isfinite(values)
        err = np.where(np.isfinite(errors), errors, 0.0)
        fax.errorbar(frames[ok], values[ok], yerr=err[ok], fmt="o" if ok.sum() <= _MARKERS
                     else ",", ms=3, lw=1,
                     color="tab:green", ecolor="tab:green", capsize=2,
                     label=f"{model}: {parameter}")
        fax.set_ylabel(f"{parameter}\n({model})", fontsize=8)
        fax.legend(fontsize=7, frameon=False, loc="upper left")

    # -- the latest I(q) ------------------------------------------------------------------

    def profile_png(self, profile: Any, curve: tuple[np.ndarray, np.ndarray] | None = None,
                    *, label: str = "fit", key: Any = None) -> bytes:
        """I(q) (an xarray Dataset with ``intensity``, optional ``sigma``) on log-log axes
        with the fit ``curve = (q, I)``. ``key``: what the picture shows (the same key
        again returns the last picture without drawing). The axes are set up once and
        their lines updated in place (a redraw does not lay the figure out again)."""
        if key is not None and key == self._profile_key:
            return self._profile_png
        if profile is None:
            self._profile_ready = False
            ax = self.profile_ax
            ax.clear()
            ax.text(0.5, 0.5, "no I(q) yet", transform=ax.transAxes, ha="center",
                    va="center", fontsize=9, color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
            self.profile_fig.set_layout_engine("constrained")
        else:
            self._draw_profile(profile, curve, label)
        self._profile_key, self._profile_png = key, _png(self.profile_fig)
        return self._profile_png

    def _setup_profile(self, xlabel: str) -> None:
        from matplotlib.ticker import NullFormatter

        ax = self.profile_ax
        ax.clear()
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # no crowded minor labels
        self._band = None
        (self._points,) = ax.plot([], [], ".", ms=2, color="0.3", label="frame")
        (self._curve,) = ax.plot([], [], color="tab:green", lw=1.5, label="fit")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("I(q)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title("latest I(q)", fontsize=9)
        self.profile_fig.set_layout_engine("constrained")  # once: then frozen by _png
        self._profile_ready = xlabel

    def _draw_profile(self, profile: Any, curve: tuple[np.ndarray, np.ndarray] | None,
                      label: str) -> None:
        rdim = profile["intensity"].dims[0]
        units = profile[rdim].attrs.get("units", "")
        xlabel = f"{rdim} ({units})" if units else rdim
        if self._profile_ready != xlabel:
            self._setup_profile(xlabel)
        ax = self.profile_ax
        q = np.asarray(profile[rdim].values, dtype=np.float64)
        iq = np.asarray(profile["intensity"].values, dtype=np.float64)
        sig = (np.asarray(profile["sigma"].values, dtype=np.float64)
               if "sigma" in profile else np.zeros_like(iq))
        sig = np.where(np.isfinite(sig), sig, 0.0)
        ok = np.isfinite(iq) & (iq > 0) & (q > 0)
        self._points.set_data(q[ok], iq[ok])
        self._points.set_label(f"frame {profile.attrs.get('frame', '?')}")
        if self._band is not None:
            self._band.remove()
        low = np.maximum(iq - sig, iq * 1e-3)  # one sigma, kept above zero on a log axis
        self._band = ax.fill_between(q[ok], low[ok], (iq + sig)[ok], color="0.7", alpha=0.5,
                                     lw=0)
        shown = [iq[ok]]
        if curve is not None:
            cq, ci = (np.asarray(c, dtype=np.float64) for c in curve)
            good = np.isfinite(ci) & (ci > 0) & (cq > 0)
            self._curve.set_data(cq[good], ci[good])
            shown.append(ci[good])
        else:
            self._curve.set_data([], [])
        self._curve.set_label(label)
        if ok.any():
            ax.set_xlim(float(q[ok].min()) / 1.05, float(q[ok].max()) * 1.05)
            values = np.concatenate(shown)
            ax.set_ylim(float(values.min()) / 1.5, float(values.max()) * 1.5)
        handles = [self._points] + ([self._curve] if curve is not None else [])
        ax.legend(handles=handles, fontsize=7, frameon=False, loc="lower left")
