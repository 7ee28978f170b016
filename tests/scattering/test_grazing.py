"""GISAXS maps through pyFAI's fibre integrator, incidence angle in degrees."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spotkit.io import load_geometry
from spotkit.scattering import integrate_grazing


@pytest.fixture
def gi_frame(gisaxs):
    from spotkit.io import open_saxs

    return open_saxs(gisaxs.path)[1].values


def test_rods_are_where_the_twin_put_them(gisaxs, gi_frame):
    ai = load_geometry(gisaxs.poni_path)
    gi = integrate_grazing(gi_frame, ai, incidence_angle_deg=gisaxs.incidence_angle_deg,
                           npt_ip=240, npt_oop=120)
    assert gi.dims == ("q_oop", "q_ip")
    assert gi.q_ip.attrs["units"] == "nm^-1"
    assert gi.attrs["incidence_angle_deg"] == pytest.approx(0.2)
    # the film is above the horizon: q_oop mostly positive (up = towards row 0)
    assert float(gi.q_oop.max()) > 5 * abs(float(gi.q_oop.min()))
    band = gi.sel(q_oop=slice(0.1, 0.6)).mean("q_oop", skipna=True)
    step = float(gi.q_ip[1] - gi.q_ip[0])
    for side in (1, -1):
        part = band.where(side * band.q_ip > 0.4, drop=True)
        q_peak = float(part.q_ip[int(np.nanargmax(part.values))])
        assert q_peak == pytest.approx(side * gisaxs.ring_q_nm, abs=1.5 * step)
    # in A^-1 the same rods sit ten times lower
    gi_a = integrate_grazing(gi_frame, ai, incidence_angle_deg=0.2, unit="A^-1",
                             npt_ip=240, npt_oop=120)
    assert float(gi_a.q_ip.max()) == pytest.approx(float(gi.q_ip.max()) / 10, rel=0.02)


def test_degrees_at_spotkit_equal_radians_at_pyfai(gisaxs, gi_frame):
    ai = load_geometry(gisaxs.poni_path)
    ours = integrate_grazing(gi_frame, ai, incidence_angle_deg=0.2, npt_ip=100, npt_oop=80,
                             method="histogram")
    fiber = load_geometry(gisaxs.poni_path).promote("FiberIntegrator")
    frame = gi_frame.astype(np.float32)
    ref = fiber.integrate2d_grazing_incidence(
        frame, npt_ip=100, npt_oop=80, incident_angle=math.radians(0.2), angle_unit="rad",
        sample_orientation=4, mask=frame < 0, method=("no", "histogram", "cython"))
    np.testing.assert_allclose(ours.q_ip, ref.inplane, atol=1e-6)
    np.testing.assert_allclose(ours.q_oop, ref.outofplane, atol=1e-6)
    valid = np.isfinite(ours.values)
    np.testing.assert_allclose(ours.values[valid], ref.intensity[valid], rtol=1e-5)
    # the pitfall: 0.2 taken as radians is 11.5 degrees, a different map
    wrong = fiber.integrate2d_grazing_incidence(
        frame, npt_ip=100, npt_oop=80, incident_angle=0.2, sample_orientation=4,
        mask=frame < 0, method=("no", "histogram", "cython"))
    assert not np.allclose(ref.outofplane, wrong.outofplane, rtol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"unit": "nm"}, r"unknown unit 'nm'; choose one of \['A\^-1', 'nm\^-1'\]"),
     ({"method": "bbox"}, "unknown method 'bbox'"),
     ({"incidence_angle_deg": float("nan")}, "incidence_angle_deg must be a finite angle"),
     ({"sample_orientation": 9}, "EXIF code 1..8")],
)
def test_bad_grazing_options(gisaxs, gi_frame, kwargs, match):
    ai = load_geometry(gisaxs.poni_path)
    options = {"incidence_angle_deg": 0.2, **kwargs}
    with pytest.raises(ValueError, match=match):
        integrate_grazing(gi_frame, ai, **options)
