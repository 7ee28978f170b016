"""Centre of rotation: :func:`find_center`, one method cross-checked by another.

The methods are in their own modules: Vo's Fourier metric (:mod:`._center_vo`), 0/180°
phase correlation (:mod:`._center_pc`), the sinusoid fit (:mod:`._center_sinusoid`); the
estimate record, the checks and the signal helpers they share in :mod:`._center_base`; the
per-row centres and the axis tilt in :mod:`._tilt`.

:func:`find_center` returns a :class:`CenterEstimate`: the value (a float) with how much to
trust it (the sharpness of the metric, a second independent method's answer) and a
:class:`CenterWarning` when the two disagree by more than a pixel, the answer sits on the
edge of the search range, or the metric is flat.
"""

from __future__ import annotations

import functools
import logging
import warnings

import numpy as np

from spotkit.tomo._center_base import (
    _HALF,
    _VO_WINDOW,
    AGREEMENT_PX,
    CENTER_METHODS,
    MIN_SHARPNESS,
    CenterEstimate,
    CenterWarning,
    _as_sinogram,
    _check_method,
    _destripe,
    _rebuild_estimate,  # noqa: F401  (pickles of CenterEstimate made before the split)
    _truncated,
)
from spotkit.tomo._center_pc import _pair_index, _pc_search, find_center_pc
from spotkit.tomo._center_sinusoid import _sinusoid_fit
from spotkit.tomo._center_vo import _check_vo_options, _vo_range, _vo_search, find_center_vo

logger = logging.getLogger(__name__)

__all__ = [
    "AGREEMENT_PX",
    "CENTER_METHODS",
    "MIN_SHARPNESS",
    "CenterEstimate",
    "CenterWarning",
    "find_center",
    "find_center_pc",
    "find_center_vo",
]

def find_center(sinogram, theta, *, method: str = "vo", check: bool = True,
                destripe: bool = True, **options) -> CenterEstimate:
    """Find the rotation axis, with a cross-check, in tomopy's convention.

    Methods:

    * ``"vo"`` (default): Vo's Fourier metric on the 360° sinogram (see
      :func:`find_center_vo`, whose keyword options are accepted here). The most accurate in
      spotkit's benchmarks on stripy, noisy tomopy-projected data and on the twin, and robust
      to a sample partly outside the field of view; needs a half or a full turn.
    * ``"pc"``: phase correlation of the first projection with the mirrored one at
      ``θ0 + 180°`` (see :func:`find_center_pc`). Here the input is a sinogram or a
      ``[rows, angles, cols]`` stack; call :func:`find_center_pc` directly with projections.
    * ``"sinusoid"``: for parallel-beam data the centre of mass of each projection moves on a
      sinusoid, ``com(θ) = a + p cos θ + q sin θ``; a least-squares fit gives the axis. Fast,
      any angles, but biased by rings, drifts, anything not rotating with the sample, and a
      sample that leaves the field of view.

    A second, independent method also runs (``"pc"`` when there is a projection at
    ``θ0 + 180°``, else ``"sinusoid"`` unless the sample leaves the field of view; ``"vo"``
    when the first method is one of those). For ``"vo"`` without ``search`` it runs first
    and ``"vo"`` searches within 8 pixels of its answer (Vo's metric alone can prefer a
    wrong minimum when the axis is far from the detector middle); with ``check`` the two
    answers are compared. A :class:`CenterWarning` is raised
    (and recorded on the result) when they disagree by more than :data:`AGREEMENT_PX`, when
    ``"vo"`` finds its minimum on the edge of the search range or a flat metric, or when
    ``"sinusoid"`` is asked for on a truncated sample.

    Parameters
    ----------
    sinogram : array_like, shape (n_angles, n_cols) or (n_rows, n_angles, n_cols)
        Line integrals (after :func:`minus_log`); a stack is summed over rows.
    theta : array_like or xarray.DataArray, shape (n_angles,)
        Projection angles in radians; an xarray coordinate with ``attrs["units"] =
        "degrees"`` is converted; a bare array spanning more than one turn is refused.
    method : {"vo", "pc", "sinusoid"}
        Method to use.
    check : bool
        Run a second method and compare.
    destripe : bool
        Remove detector stripes (a column offset at every angle) before every method.
    **options
        Keyword options of the method (:func:`find_center_vo`, :func:`find_center_pc`).

    Returns
    -------
    CenterEstimate
        A float (tomopy's convention, ``n_cols / 2`` the middle of the detector) with
        ``method``, ``sharpness``, ``check_method``, ``check_center`` and ``warnings``.

    Raises
    ------
    ValueError
        For an unknown method, shapes that disagree, data with NaN or angles in degrees.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> cols = np.arange(64.0) + 0.5
    >>> sino = np.exp(-0.5 * ((cols[None] - 30.5 - 8 * np.cos(theta)[:, None]) / 3) ** 2)
    >>> c = find_center(sino, theta)
    >>> round(c, 1), c.check_method, c.ok
    (30.5, 'pc', True)
    """
    _check_method(method)
    if method == "sinusoid" and options:
        raise TypeError(f"method 'sinusoid' takes no options, got {sorted(options)}")
    arr = np.asarray(sinogram)
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"sinogram must be 2-D [angles, columns] or 3-D [rows, angles, columns], "
            f"got shape {arr.shape}")
    sino, theta = _as_sinogram(arr, theta)
    if destripe:
        sino = _destripe(sino)
    # only needed without a 180° partner or for 'sinusoid': ~0.1 s on 1500 x 2048
    truncated = functools.cache(lambda: _truncated(sino))
    problems: list[str] = []

    def run(name: str, opts: dict) -> tuple[float, float]:
        if name == "vo":
            vo_opts = {k: v for k, v in opts.items()
                       if k not in ("search", "workers", "around")}
            _check_vo_options(vo_opts.get("step", 0.25), vo_opts.get("ratio", 0.5),
                              vo_opts.get("drop", 20), vo_opts.get("sigma", 2.0))
            lo, hi = _vo_range(sino.shape[1], opts.get("search"))
            if opts.get("around") is not None:  # near a coarse estimate (see below)
                lo = max(lo, opts["around"] - _VO_WINDOW)
                hi = min(hi, opts["around"] + _VO_WINDOW)
            axis, sharp, edge = _vo_search(sino, theta, lo, hi, workers=opts.get("workers"),
                                           **vo_opts)
            if edge and name == method:
                problems.append(
                    f"'vo' found its minimum at {axis + _HALF:.2f}, on the edge of the search "
                    f"range {lo + _HALF:.1f}..{hi + _HALF:.1f}: widen `search`, or look at "
                    "the centre with a sweep")
            if sharp < MIN_SHARPNESS and name == method:
                problems.append(
                    f"'vo' metric is flat (sharpness {sharp:.3f} < {MIN_SHARPNESS}): the "
                    "sinogram may hold no sample, or too little signal")
            return axis, sharp
        if name == "pc":  # a stack as projections: the correlation uses every row
            if arr.ndim == 3:
                return _pc_search(arr.transpose(1, 0, 2), theta, destripe=destripe, **opts)
            return _pc_search(sino, theta, **opts)
        return _sinusoid_fit(sino, theta)

    # 'vo' alone can lock onto a wrong minimum when the axis is far from the detector middle
    # (its mirrored half then overlaps the data less; seen 20 px off at 37 px from the middle
    # on 256 columns): it searches within a few pixels of the independent estimate, which
    # then also serves as the cross-check
    check_method = check_axis = None
    if method == "vo" and "search" not in options:
        check_method = _check_partner(method, theta, truncated)
        if check_method is not None:
            try:
                check_axis, _ = run(check_method, {})
            except ValueError as exc:
                logger.info("coarse centre with %r not possible: %s", check_method, exc)
                check_method = None
        options = {**options, "around": check_axis}
    axis, sharpness = run(method, options)
    if method == "sinusoid" and truncated():
        problems.append("the sample reaches the detector edges (partly outside the field of "
                        "view): 'sinusoid' is biased there; use 'vo'")
    if not check:
        check_method = check_axis = None
    elif check_axis is None:
        check_method = _check_partner(method, theta, truncated)
        if check_method is not None:
            try:
                check_axis, _ = run(check_method, {})
            except ValueError as exc:  # e.g. too few angles: no cross-check, say so
                logger.info("centre cross-check with %r not possible: %s", check_method, exc)
                check_method = None
    if check_axis is not None and abs(axis - check_axis) > AGREEMENT_PX:
        problems.append(
            f"'{method}' found {axis + _HALF:.2f} but '{check_method}' found "
            f"{check_axis + _HALF:.2f} ({abs(axis - check_axis):.1f} px apart): check the "
            "centre with a sweep (spotkit.tomo.center_sweep) or spotkit.widgets.CenterFinder")
    for text in problems:
        warnings.warn(text, CenterWarning, stacklevel=2)
    result = CenterEstimate(
        axis + _HALF, method=method, sharpness=sharpness, check_method=check_method,
        check_center=None if check_axis is None else check_axis + _HALF, warnings=problems)
    logger.debug("centre %r", result)
    return result


def _check_partner(method: str, theta: np.ndarray, truncated) -> str | None:
    """The independent method to cross-check ``method`` with (None when none fits);
    ``truncated()`` says whether the sample leaves the field of view."""
    step = float(np.median(np.abs(np.diff(theta)))) if theta.size > 1 else np.inf
    has_partner = abs(_pair_index(theta, 0, np.pi)[1]) <= 1.5 * step
    if method == "vo":
        if has_partner:
            return "pc"
        return None if truncated() else "sinusoid"
    return "vo"
