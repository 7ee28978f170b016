"""fit_sas against truth (sasmodels-made I(q) with Poisson noise, the SAXS twin) and the field.

The field: measured SANS of two monodisperse polymer blends that sasdata ships in its
example_data, whose radii of gyration its documentation states (testdata_help.rst:
ISIS_Polymer_Blend_RT2 "Rg~58 Ang", ISIS_Polymer_Blend_TK49 "Rg~74 Ang"), measured USANS of
latex spheres "0.5micron diameter" (latex_smeared.xml, slit-smeared), and SasView's own
simulated 100 nm spheres with 15 % pinhole resolution (100nmPinholeSphere.txt, radius 500 A).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from spotkit.scattering import SAS_MODELS, fit_sas, sas_model_curve

Q = np.linspace(0.05, 3.0, 240)  # nm^-1

#: model -> true parameters (nm, nm^-1), the parameter that matters most
TRUTH = {
    "sphere": ({"radius": 4.0, "scale": 0.01, "background": 0.02}, "radius"),
    "core_shell_sphere": ({"radius": 6.0, "thickness": 1.5, "scale": 0.01,
                           "background": 0.02}, "radius"),
    "guinier_porod": ({"rg": 3.0, "porod_exp": 4.0, "scale": 1.0, "background": 0.01}, "rg"),
    "mono_gauss_coil": ({"rg": 5.0, "i_zero": 50.0, "background": 0.1}, "rg"),
    "gaussian_peak": ({"peak_pos": 1.2, "sigma": 0.05, "scale": 10.0, "background": 0.5},
                      "peak_pos"),
    "peak_lorentz": ({"peak_pos": 1.2, "peak_hwhm": 0.05, "scale": 10.0, "background": 0.5},
                     "peak_pos"),
    "broad_peak": ({"porod_scale": 1e-3, "porod_exp": 3.0, "peak_scale": 5.0,
                    "correlation_length": 20.0, "peak_pos": 1.2, "background": 0.5},
                   "peak_pos"),
    "sphere+gaussian_peak": ({"A_radius": 6.5, "A_scale": 0.01, "B_peak_pos": 1.6,
                              "B_sigma": 0.06, "B_scale": 2.0, "background": 0.05}, "A_radius"),
}


def _poisson(model, truth, *, counts=2e5, seed=0):
    """Noisy I(q) with Poisson errors, the brightest bin holding ``counts`` counts."""
    rng = np.random.default_rng(seed)
    clean = sas_model_curve(Q, model=model, params=truth)
    k = counts / clean.max()
    n = rng.poisson(clean * k)
    return n / k, np.sqrt(np.maximum(n, 1)) / k


def _example_data() -> Path:
    if importlib.util.find_spec("sasdata") is None:
        pytest.skip("sasdata (a test dependency) is not installed")
    spec = importlib.util.find_spec("sasdata")
    return Path(next(iter(spec.submodule_search_locations))) / "example_data" / "1d_data"


def test_every_listed_model_has_a_truth_case():
    assert set(TRUTH) == set(SAS_MODELS)


@pytest.mark.parametrize("model", sorted(TRUTH))
def test_recovers_the_truth_from_poisson_noise(model):
    truth, key = TRUTH[model]
    intensity, sigma = _poisson(model, truth, seed=len(model))
    fit = fit_sas(Q, intensity, sigma, model=model)
    assert 0.5 < fit.chi2 < 1.6, fit.summary()
    for name, value in truth.items():
        assert abs(fit.params[name] - value) < 5 * fit.errors[name] + 1e-12, fit.summary()
    assert fit.params[key] == pytest.approx(truth[key], rel=0.02)
    assert all(fit.start_from[n] == "scan" for n in fit.free)  # nothing was given


def test_uncertainties_match_the_scatter_of_repeated_fits():
    truth, _ = TRUTH["mono_gauss_coil"]
    pulls = []
    for seed in range(12):
        intensity, sigma = _poisson("mono_gauss_coil", truth, counts=2e4, seed=100 + seed)
        fit = fit_sas(Q, intensity, sigma, model="mono_gauss_coil")
        pulls.append((fit.params["rg"] - truth["rg"]) / fit.errors["rg"])
    assert 0.6 < np.std(pulls) < 1.5, pulls
    assert abs(np.mean(pulls)) < 0.7, pulls


def test_nm_and_angstrom_give_the_same_fit_in_their_units():
    truth, _ = TRUTH["sphere"]
    intensity, sigma = _poisson("sphere", truth, seed=3)
    nm = fit_sas(Q, intensity, sigma, model="sphere", q_unit="q_nm^-1")
    ang = fit_sas(Q / 10, intensity, sigma, model="sphere", q_unit="A^-1")
    assert nm.units["radius"] == "nm"
    assert ang.units["radius"] == "A"
    assert nm.q_unit == "nm^-1"
    assert "A^-1" in nm.notes[0]
    assert ang.params["radius"] == pytest.approx(10 * nm.params["radius"], rel=1e-5)
    assert nm.sasmodels_params["radius"] == pytest.approx(ang.params["radius"], rel=1e-5)
    peak = fit_sas(Q, *_poisson("gaussian_peak", TRUTH["gaussian_peak"][0]),
                   model="gaussian_peak")
    assert peak.units["peak_pos"] == "nm^-1"
    assert peak.sasmodels_params["peak_pos"] == pytest.approx(peak.params["peak_pos"] / 10)


def test_without_sigma_the_errors_come_from_the_scatter():
    truth, _ = TRUTH["guinier_porod"]
    intensity, _ = _poisson("guinier_porod", truth, seed=5)
    fit = fit_sas(Q, intensity, model="guinier_porod")
    assert any("relative weights" in n for n in fit.notes)
    assert fit.params["rg"] == pytest.approx(truth["rg"], rel=0.02)
    assert 0 < fit.errors["rg"] < 0.05


def test_masked_bins_and_q_range_are_left_out():
    truth, _ = TRUTH["gaussian_peak"]
    intensity, sigma = _poisson("gaussian_peak", truth, seed=6)
    intensity[:10] = np.nan  # as integrate_1d marks empty bins
    sigma[20] = 0.0
    fit = fit_sas(Q, intensity, sigma, model="gaussian_peak", q_range=(0.8, None))
    used = (Q >= 0.8) & np.isfinite(intensity) & (sigma > 0)
    assert fit.n_points == used.sum()
    assert fit.params["peak_pos"] == pytest.approx(1.2, abs=0.01)
    assert fit.curve.shape == fit.q.shape
    np.testing.assert_allclose(fit.evaluate(fit.q), fit.curve, rtol=1e-6)


def test_given_values_are_held_or_used_as_start():
    truth, _ = TRUTH["core_shell_sphere"]
    intensity, sigma = _poisson("core_shell_sphere", truth, seed=7)
    fit = fit_sas(Q, intensity, sigma, model="core_shell_sphere",
                  params={"thickness": 1.5, "radius": 5.0},
                  free=["radius", "scale", "background"])
    assert fit.params["thickness"] == 1.5
    assert "thickness" not in fit.free
    assert fit.start_from["radius"] == "given"
    assert fit.start["radius"] == 5.0
    assert fit.params["radius"] == pytest.approx(6.0, rel=0.01)
    values = fit.values()
    assert set(values) == {"radius", "radius_err", "scale", "scale_err", "background",
                           "background_err", "chi2", "n_points", "q_unit"}


def test_the_twin_ring_position(saxs, saxs_frames, saxs_ai):
    """The SAXS twin's ordering ring (true q = 1 nm^-1) found by a peak fit of its I(q)."""
    from spotkit.scattering import integrate_1d

    mask = saxs.beamstop_mask() | saxs.gap_mask()
    iq = integrate_1d(saxs_frames[-1].values, saxs_ai, npt=200, mask=mask)
    fit = fit_sas(iq["q"].values, iq["intensity"].values, iq["sigma"].values,
                  model="broad_peak")
    assert fit.params["peak_pos"] == pytest.approx(saxs.ring_q_nm, rel=0.01), fit.summary()


def test_measured_polymer_blends_match_their_documented_rg():
    """Measured SANS (ISIS LOQ) of d/h-polystyrene blends: sasdata documents Rg ~58 and ~74 A."""
    pytest.importorskip("sasdata")
    from sasdata.dataloader.loader import Loader

    for name, documented in (("ISIS_Polymer_Blend_RT2.xml", 58.0),
                             ("ISIS_Polymer_Blend_TK49.xml", 74.0)):
        data = Loader().load(str(_example_data() / name))[0]
        fit = fit_sas(data.x, data.y, data.dy, model="mono_gauss_coil", q_unit="A^-1",
                      dq=data.dx)
        assert fit.params["rg"] == pytest.approx(documented, rel=0.05), (name, fit.summary())
        assert fit.chi2 < 1.5, fit.summary()


def test_measured_latex_spheres_with_slit_smearing():
    """Measured USANS of latex spheres, "0.5micron diameter" (the file's title): slit-smeared
    data give the size only with the slit length in the model."""
    pytest.importorskip("sasdata")
    from sasdata.dataloader.loader import Loader

    _, usans = Loader().load(str(_example_data() / "latex_smeared.xml"))
    assert "0.5micron diameter" in usans.title
    contrast = {"sld": 1.0, "sld_solvent": 6.3}
    fit = fit_sas(usans.x, usans.y, usans.dy, model="sphere", q_unit="A^-1", params=contrast,
                  slit_length=usans.dxl)
    assert 2 * fit.params["radius"] == pytest.approx(5000.0, rel=0.1), fit.summary()
    assert fit.chi2 < 1.5, fit.summary()
    unsmeared = fit_sas(usans.x, usans.y, usans.dy, model="sphere", q_unit="A^-1",
                        params=contrast)
    assert unsmeared.chi2 > 10 * fit.chi2
    with pytest.raises(ValueError, match="not both"):
        fit_sas(usans.x, usans.y, usans.dy, dq=usans.dxl, slit_length=usans.dxl)


def test_sasview_pinhole_spheres_with_resolution():
    """SasView's 1 % SiO2 spheres, radius 500 A, 15 % dQ/Q: only right with the resolution."""
    table = np.loadtxt(_example_data() / "100nmPinholeSphere.txt", skiprows=13)
    q, intensity, sigma, dq = table.T
    contrast = {"sld": 4.2, "sld_solvent": 6.4}
    fit = fit_sas(q, intensity, sigma, model="sphere", q_unit="A^-1", params=contrast, dq=dq)
    assert fit.params["radius"] == pytest.approx(500.0, rel=0.005), fit.summary()
    assert fit.params["scale"] == pytest.approx(0.01, rel=0.02), fit.summary()
    assert fit.chi2 < 5


def test_bad_input_names_what_is_allowed():
    with pytest.raises(ValueError, match=r"unknown model 'cylinder'.*'sphere'"):
        fit_sas(Q, Q, model="cylinder")
    with pytest.raises(ValueError, match="unknown q_unit 'nm'"):
        fit_sas(Q, Q, q_unit="nm")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) in params 'radus'.*'radius'"):
        fit_sas(Q, Q, params={"radus": 3.0})
    with pytest.raises(ValueError, match="not free"):
        fit_sas(Q, Q, bounds={"sld": (0, 1)})
    with pytest.raises(ValueError, match="usable points"):
        fit_sas(Q[:3], Q[:3])
    with pytest.raises(ValueError, match="unknown method"):
        fit_sas(Q, Q, method="magic")
    with pytest.raises(ValueError, match="q_range"):
        fit_sas(Q, Q, q_range=(2.0, 1.0))
    with pytest.raises(ValueError, match=r"radius='big'.*finite number"):
        fit_sas(Q, Q, params={"radius": "big"})
    with pytest.raises(ValueError, match=r"radius_pd_type='gauss'.*'gaussian'"):
        sas_model_curve(Q, params={"radius_pd_type": "gauss"})



@pytest.mark.filterwarnings("ignore:Did not converge:UserWarning")  # a short chain, on purpose
def test_dream_posterior_agrees_with_the_covariance():
    truth, _ = TRUTH["mono_gauss_coil"]
    intensity, sigma = _poisson("mono_gauss_coil", truth, counts=2e4, seed=9)
    lm = fit_sas(Q, intensity, sigma, model="mono_gauss_coil")
    # a random chain (bumps' own generator): the checks leave room for its scatter
    dream = fit_sas(Q, intensity, sigma, model="mono_gauss_coil", method="dream",
                    fit_options={"samples": 1500, "burn": 50})
    assert dream.method == "dream"
    assert abs(dream.params["rg"] - lm.params["rg"]) < lm.errors["rg"]
    assert dream.errors["rg"] == pytest.approx(lm.errors["rg"], rel=0.35)


def test_polydisperse_spheres_width_is_fitted():
    truth = {"radius": 4.0, "scale": 0.01, "background": 0.02, "radius_pd": 0.1,
             "radius_pd_type": "schulz"}
    clean = sas_model_curve(Q, model="sphere", params=truth)
    n = np.random.default_rng(2).poisson(clean * 1e5)
    intensity, sigma = n / 1e5, np.sqrt(np.maximum(n, 1)) / 1e5
    fit = fit_sas(Q, intensity, sigma, model="sphere",
                  params={"radius_pd": 0.05, "radius_pd_type": "schulz"},
                  free=["radius", "radius_pd", "scale", "background"])
    assert fit.params["radius_pd"] == pytest.approx(0.1, abs=4 * fit.errors["radius_pd"])
    assert fit.params["radius"] == pytest.approx(4.0, abs=4 * fit.errors["radius"])
    assert fit.params["radius_pd_type"] == "schulz"
    assert fit.chi2 < 1.6
    mono = fit_sas(Q, intensity, sigma, model="sphere")  # the wrong model says so: chi2
    assert mono.chi2 > 20


def test_data_without_the_feature_say_so():
    """Flat noise fitted with spheres: no radius can be read from it, and the fit says so."""
    noise = np.random.default_rng(0).normal(1.0, 0.01, Q.size)
    fit = fit_sas(Q, noise, np.full(Q.size, 0.01), model="sphere")
    assert fit.chi2 < 1.5  # the background alone explains the data
    assert any("not determined by the data" in n and "radius" in n for n in fit.notes)
