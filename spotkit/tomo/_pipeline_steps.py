"""A pipeline's steps applied to arrays: what a runner calls for each block of rows.

The runner (:func:`spotkit.pipelines.run_tomo`) reads detector rows and writes the volume;
everything it does to the numbers goes through these methods of
:class:`~spotkit.tomo.TomoPipeline`, so the science stays here, array in, array out:

- :meth:`~StepRunner.apply_projections` runs the projection steps on a block of rows;
- :meth:`~StepRunner.center_rows` says which detector rows a centre step samples, and
  :meth:`~StepRunner.center_output` finds the centre on them (the step's side output);
- :meth:`~StepRunner.reconstruct_block` turns a processed block into slices in 1/cm.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spotkit.tomo._center import CenterEstimate, CenterWarning

logger = logging.getLogger(__name__)

__all__ = ["STEP_FUNCTIONS", "StepRunner", "binned_angles"]

_REF = re.compile(r"^\$([A-Za-z_][\w-]*)\.([A-Za-z_]\w*)$")


@dataclass(frozen=True)
class _StepKind:
    kind: str  # "projection" | "center" | "reconstruct"
    supplied: tuple[str, ...]  # arguments the runner passes itself
    side_outputs: tuple[str, ...] = ()


#: The functions a pipeline step may name, with how the runner calls them.
STEP_FUNCTIONS: dict[str, _StepKind] = {
    "normalize": _StepKind("projection", ("proj", "flats", "darks", "out")),
    "remove_zingers": _StepKind("projection", ("proj",)),
    "remove_stripes": _StepKind("projection", ("sino_or_proj", "data", "arr", "proj")),
    "minus_log": _StepKind("projection", ("trans", "out")),
    "downsample": _StepKind("projection", ("arr", "data", "proj")),
    "find_center": _StepKind("center", ("sinogram", "theta"), ("center",)),
    "reconstruct": _StepKind("reconstruct", ("sinograms", "theta")),
}


def tomo_function(name: str):
    """The public :mod:`spotkit.tomo` function a step names (None if there is none)."""
    import spotkit.tomo

    return getattr(spotkit.tomo, name, None)


def binned_angles(theta: np.ndarray, n_angles: int) -> np.ndarray:
    """``theta`` after angle binning to ``n_angles`` projections (by a downsample step).

    Examples
    --------
    >>> binned_angles(np.array([0.0, 0.1, 0.2, 0.3]), 2).tolist()
    [0.05, 0.25]
    """
    theta = np.asarray(theta, dtype=np.float64)
    if n_angles == theta.size:
        return theta
    factor = theta.size // n_angles
    return theta[: n_angles * factor].reshape(n_angles, factor).mean(axis=1)


class StepRunner:
    """The array half of a pipeline run; :class:`~spotkit.tomo.TomoPipeline` inherits it."""

    steps: list[dict[str, Any]]

    def step_kind(self, step: dict[str, Any]) -> str:
        """``"projection"``, ``"center"`` or ``"reconstruct"`` (``""`` for an unknown function)."""
        kind = STEP_FUNCTIONS.get(step.get("function") or "")
        return kind.kind if kind else ""

    def projection_steps(self, steps: Sequence[dict[str, Any]] | None = None) -> list[dict]:
        """The projection steps among ``steps`` (default: all), in order."""
        return [s for s in (self.steps if steps is None else steps)
                if self.step_kind(s) == "projection"]

    def binning_factors(self, steps: Sequence[dict[str, Any]] | None = None
                        ) -> tuple[int, int, int]:
        """Binning of (angles, rows, columns) by the downsample steps among ``steps``.

        Examples
        --------
        >>> from spotkit.tomo import TomoPipeline
        >>> TomoPipeline.default(binning=2, center=64.0).binning_factors()
        (1, 2, 2)
        """
        factors = [1, 1, 1]
        for step in self.steps if steps is None else steps:
            if step.get("function") != "downsample":
                continue
            axes = step["params"].get("axis", -1)
            axes = list(axes) if isinstance(axes, list | tuple) else [axes]
            fac = step["params"].get("factor", 2)
            fac = list(fac) if isinstance(fac, list | tuple) else [fac] * len(axes)
            for a, f in zip(axes, fac, strict=False):
                factors[int(a) % 3] *= int(f)
        return factors[0], factors[1], factors[2]

    @staticmethod
    def resolve(params: dict[str, Any], side: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """``params`` with each ``"$<step id>.<output>"`` replaced by that side output."""
        out = {}
        for k, v in params.items():
            m = _REF.match(v) if isinstance(v, str) else None
            out[k] = side[m.group(1)][m.group(2)] if m else v
        return out

    def apply_projections(self, proj: np.ndarray, flats: np.ndarray, darks: np.ndarray,
                          side: dict[str, dict[str, Any]] | None = None, *,
                          steps: Sequence[dict[str, Any]] | None = None) -> np.ndarray:
        """Run the projection steps (default: all of them) on a block of detector rows.

        Parameters
        ----------
        proj, flats, darks : ndarray, shape (frames, rows, columns)
            Raw projections of some detector rows, and their flat and dark frames.
        side : dict, optional
            Side outputs of earlier steps, for ``"$<id>.<output>"`` parameters.
        steps : list of dict, optional
            The steps to run (projection steps only are run).

        Returns
        -------
        ndarray, shape (angles, rows, columns)
            After the steps (binned when a downsample step is among them).

        Examples
        --------
        >>> import numpy as np
        >>> from spotkit.tomo import TomoPipeline
        >>> pipe = TomoPipeline.default(center=32.0)
        >>> proj = np.full((4, 2, 64), 500.0)
        >>> out = pipe.apply_projections(proj, np.full((2, 2, 64), 1000.0), np.zeros((2, 2, 64)))
        >>> out.shape, round(float(out.mean()), 4)
        ((4, 2, 64), 0.6931)
        """
        data = proj
        for step in self.projection_steps(steps):
            func = tomo_function(step["function"])
            params = self.resolve(step["params"], side or {})
            if step["function"] == "normalize":
                data = func(data, flats, darks, **params)
            else:
                data = func(data, **params)
        return data

    def center_rows(self, step: dict[str, Any], first_row: int, n_slices: int) -> list[int]:
        """Detector rows a centre step samples (its ``rows`` fractions of the slices).

        Each sample is one output slice: as many consecutive detector rows as the row binning.
        """
        f_rows = self.binning_factors()[1]
        fractions = step["params"].get("rows", [0.5])
        starts = sorted({first_row + f_rows * round(f * (n_slices - 1)) for f in fractions})
        return [s + i for s in starts for i in range(f_rows)]

    def center_output(self, step: dict[str, Any], block: np.ndarray, theta: np.ndarray,
                      side: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Run a centre step on its sample rows; return its side output.

        Parameters
        ----------
        step : dict
            The ``find_center`` step.
        block : ndarray, shape (angles, rows, columns)
            The sample rows (:meth:`center_rows`) after the projection steps before it.
        theta : ndarray
            Angles (radians) of the raw projections.
        side : dict
            Side outputs so far.

        Returns
        -------
        dict
            ``center`` (in the columns of ``block``), ``center_check`` (how far to trust it)
            and, after column binning, ``center_full_resolution``. A
            :class:`~spotkit.tomo.CenterWarning` is logged as a warning (and kept in the
            record), not raised.
        """
        params = self.resolve(step["params"], side)
        params.pop("rows", None)
        sinos = np.ascontiguousarray(np.swapaxes(block, 0, 1))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CenterWarning)
            found = tomo_function("find_center")(sinos, binned_angles(theta, block.shape[0]),
                                                 **params)
        center = float(found)
        out: dict[str, Any] = {"center": center}
        if isinstance(found, CenterEstimate):  # how far to trust it: provenance
            out["center_check"] = found.to_dict()
        for w in caught:  # shown to the user, and recorded above with the run
            if issubclass(w.category, CenterWarning):
                logger.warning("step %s: %s", step["id"], w.message)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        before = self.steps[: self.steps.index(step)] if step in self.steps else []
        f_cols = self.binning_factors(self.projection_steps(before))[2]
        if f_cols > 1:  # also where the axis is on the unbinned detector
            out["center_full_resolution"] = center * f_cols
        logger.info("step %s: centre %.2f", step["id"], center)
        return out

    def reconstruct_block(self, block: np.ndarray, theta: np.ndarray,
                          side: dict[str, dict[str, Any]], *, pixel_um: float = 1.0):
        """Reconstruct a block of processed rows into slices in 1/cm.

        Parameters
        ----------
        block : ndarray, shape (angles, rows, columns)
            Rows after the projection steps (:meth:`apply_projections`).
        theta : ndarray
            Angles (radians) of the raw projections (binned here as the block is).
        side : dict
            Side outputs, for the reconstruct step's ``"$<id>.center"``.
        pixel_um : float
            Size of a pixel of ``block`` in µm (binned pixels after binning).

        Returns
        -------
        volume : ndarray, float32, shape (rows, n, n)
        info : ReconInfo
            What ran (:func:`spotkit.tomo.reconstruct_with_info`).
        """
        params = self.resolve(self.steps[-1]["params"], side)
        sinos = np.ascontiguousarray(np.swapaxes(block, 0, 1))
        vol, info = tomo_function("reconstruct_with_info")(
            sinos, binned_angles(theta, block.shape[0]), **params)
        del sinos
        vol /= np.float32(pixel_um * 1e-4)  # per pixel -> 1/cm
        return vol, info
