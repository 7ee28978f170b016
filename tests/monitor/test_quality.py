"""Keep-up quality checks: summaries, tests, references from the catalog, verdicts stored on
both backends, and `spotkit catalog show`.

Tiny products: twin scans of (60 angles, 4 rows, 48 columns) reconstructed with spotkit,
synthetic I(q) curves with Poisson-like noise. A few seconds in all.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings

import h5py
import numpy as np
import pytest

from spotkit import tomo
from spotkit.catalog import open_catalog
from spotkit.monitor import (
    QUALITY_KINDS,
    Finding,
    ProductSummary,
    check_outputs,
    check_product,
    compare_summaries,
    configuration,
    quality_findings,
    quality_verdict,
    quality_verdicts,
    ring_metric,
    select_references,
    summarize_iq,
    summarize_raw_saxs,
    summarize_raw_tomo,
    summarize_volume,
)
from spotkit.sim import simulate_tomo_scan

DAY0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
SHAPE = (60, 4, 48)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request, tmp_path):
    """A fresh catalog: a SQLite file, or a new database of the test PostgreSQL server."""
    if request.param == "sqlite":
        yield tmp_path / "catalog.db"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


# -- summaries --------------------------------------------------------------------------------


def test_ring_metric_sees_rings_not_inclusions():
    rng = np.random.default_rng(0)
    img = rng.normal(1.0, 0.05, (64, 64))
    yy, xx = np.indices(img.shape) - 31.5
    blob = img + 2.0 * (np.hypot(yy - 10, xx - 5) < 3)  # an inclusion: a few sectors
    ring = img + 0.3 * (np.abs(np.hypot(yy, xx) - 15) < 0.5)
    base = ring_metric(img)
    assert ring_metric(blob) < 3 * base
    assert ring_metric(ring) > 10 * base
    with pytest.raises(ValueError, match="2-D slice"):
        ring_metric(np.zeros(5))


def test_volume_summary_is_small_and_round_trips():
    vol = np.random.default_rng(1).normal(0.02, 0.005, (6, 48, 48)).astype(np.float32)
    s = summarize_volume(vol, center_used=24.5, center_found=24.0)
    assert s.scalars["center_offset"] == pytest.approx(0.5)
    assert len(s.curves["quantiles"]) == 100
    assert sum(s.detail["histogram"]["counts"]) > 0
    assert s.nbytes < 20_000
    back = ProductSummary.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    assert summarize_volume(vol).detail["center"]["note"].startswith("the product records no")
    with pytest.raises(ValueError, match="at least 8 x 8"):
        summarize_volume(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="unknown summary family"):
        ProductSummary("spectrum", {})


def test_iq_summary_resamples_long_curves():
    q = np.linspace(0.05, 3.0, 1000)
    s = summarize_iq(q, np.stack([1 / q] * 3), np.stack([0.01 / q] * 3), points=100)
    assert len(s.curves["q"]) <= 100
    assert s.scalars["integral"] == pytest.approx(np.trapezoid(1 / q, q), rel=1e-9)
    assert np.nanmax(s.curves["rel_sigma"]) < 0.02
    with pytest.raises(ValueError, match="n_q = 1000"):
        summarize_iq(q, np.ones(10))


def test_raw_summaries_count_dead_pixels():
    rng = np.random.default_rng(2)
    flats = rng.poisson(1000, (5, 16, 32)).astype(float) + 100
    darks = rng.normal(100, 2, (5, 16, 32))
    flats[:, 3, :5] = darks[:, 3, :5]  # 5 dead pixels: read the dark level
    s = summarize_raw_tomo(flats, darks)
    assert s.scalars["dead_fraction"] == pytest.approx(5 / 512)
    assert s.scalars["flat_level"] == pytest.approx(1000, rel=0.01)
    frames = rng.poisson(40, (3, 32, 32)).astype(float)
    frames[:, 0, 0] = -1  # a gap: not a dead pixel
    frames[:, 10, 10:15] = 0
    r = summarize_raw_saxs(frames)
    assert r.scalars["dead_fraction"] == pytest.approx(5 / 1023)


# -- the statistical tests on tiny I(q) examples ----------------------------------------------


def _iq(rng, *, gain=1.0, dead=0.0, shift=0.0):
    q = np.linspace(0.1, 2.0, 120)
    counts = 2000 * (1 / (1 + (5 * q) ** 2) + 0.5 * np.exp(-0.5 * ((q - 1.0 - shift) / 0.04) ** 2))
    counts = counts * rng.normal(1.0, 0.005)  # product-to-product normalisation scatter
    pixels = np.full(q.size, 200)
    lost = rng.binomial(pixels, dead) / pixels if dead else 0.0
    inten = rng.poisson(counts * gain * (1 - lost) * 3) / 3
    s = summarize_iq(q, inten, np.sqrt(inten / 3))
    # what summarize_dataset adds from the raw frames (summarize_raw_saxs): a 1 % loss of
    # intensity hides in the product-to-product scatter, the dead pixels do not
    raw_dead = rng.binomial(5000, dead) / 5000 if dead else 0.0
    return ProductSummary("iq", {**s.scalars, "raw_dead_fraction": raw_dead}, s.curves, s.detail)


@pytest.mark.parametrize(("fault", "kwargs"), [("dead", {"dead": 0.01}), ("gain", {"gain": 1.05}),
                                               ("center", {"shift": 0.01})])
def test_iq_faults_fail_and_clean_passes(fault, kwargs):
    rng = np.random.default_rng(3)
    refs = [_iq(rng) for _ in range(12)]
    clean = [compare_summaries(_iq(rng), refs) for _ in range(5)]
    assert all(t.passed for tests in clean for t in tests), [t.message for t in clean[0]]
    bad = compare_summaries(_iq(rng, **kwargs), refs)
    failed = [t.name for t in bad if not t.passed]
    assert failed, f"{fault} not caught: {[t.message for t in bad]}"
    assert all(t.z is not None for t in bad if t.name in ("iq_shape", "iq_level"))


def test_compare_needs_references_of_the_same_family():
    rng = np.random.default_rng(4)
    s = _iq(rng)
    with pytest.raises(ValueError, match="at least 3 references"):
        compare_summaries(s, [s, s])
    vol = summarize_volume(np.ones((1, 16, 16)))
    with pytest.raises(ValueError, match="cannot be compared"):
        compare_summaries(s, [vol] * 3)


# -- tomography products through the catalog --------------------------------------------------


def _product(cat, folder, seed, *, fault=None, params=None, energy=25.0, when=None,
             notebook="tomo_recon.ipynb"):
    """A twin scan, ingested, reconstructed with spotkit and registered by a run."""
    folder.mkdir(parents=True, exist_ok=True)
    raw_path = folder / f"scan_{seed}.h5"
    simulate_tomo_scan(raw_path, shape=SHAPE, seed=seed, center_offset=1.0,
                       energy_kev=energy, beam_drift=0.05 if fault == "gain" else 0.0,
                       start_time=when or DAY0 + dt.timedelta(minutes=seed))
    if fault == "dead":
        rng = np.random.default_rng(seed)
        pick = rng.choice(SHAPE[1] * SHAPE[2], 4, replace=False)  # 2 % of 192 pixels
        r, c = np.unravel_index(pick, SHAPE[1:])
        with h5py.File(raw_path, "r+") as f:
            dark = np.median(f["exchange/data_dark"][...], axis=0)
            for name in ("exchange/data", "exchange/data_white"):
                data = f[name][...]
                data[:, r, c] = dark[r, c].astype(data.dtype)
                f[name][...] = data
    raw = cat.ingest(raw_path)
    with h5py.File(raw_path, "r") as f:
        sino = tomo.minus_log(tomo.normalize(f["exchange/data"][...], f["exchange/data_white"][...],
                                             f["exchange/data_dark"][...]))
        theta = np.deg2rad(f["exchange/theta"][...])
    stack = np.moveaxis(tomo.remove_stripes(sino, method="fw"), 1, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tomo.CenterWarning)
        found = float(tomo.find_center(stack, theta))
    used = found + (1.0 if fault == "center" else 0.0)
    path = folder / f"volume_{seed}.h5"
    with h5py.File(path, "w") as f:
        f["recon"] = tomo.reconstruct(stack, theta, used)
    run = cat.start_run(dataset_id=raw.id, notebook=folder / notebook, notebook_sha256="abc",
                        parameters={"dataset_id": raw.id, "output_dir": str(folder),
                                    **(params or {"stripe_method": "fw"})})
    (product,) = cat.finish_run(run, state="completed", outputs=[
        {"path": path, "kind": "tomo/recon", "key": "/recon",
         "metadata": {"center": used, "rows": [0, SHAPE[1]]}}])
    return product


@pytest.fixture(scope="module")
def tomo_catalog(tmp_path_factory):
    """8 clean volumes checked in order (the first 5 without references), then one of each
    fault; a SQLite catalog shared by the tests below."""
    work = tmp_path_factory.mktemp("quality")
    cat = open_catalog(work / "catalog.db")
    verdicts = [check_product(cat, _product(cat, work / "p", seed), min_references=5)
                for seed in range(8)]
    faults = {fault: check_product(cat, _product(cat, work / "p", 100 + k, fault=fault),
                                   min_references=5)
              for k, fault in enumerate(("dead", "gain", "center"))}
    clean = check_product(cat, _product(cat, work / "p", 200), min_references=5)
    yield cat, verdicts, faults, clean
    cat.close()


def test_first_products_have_no_reference_then_clean_passes(tomo_catalog):
    _, verdicts, _, clean = tomo_catalog
    assert [v.verdict for v in verdicts[:5]] == ["no reference"] * 5
    assert "too few references: 0 with this configuration, 5 needed" in verdicts[0].reasons[0]
    # says how many references there are and how many are needed, not "against 3"
    assert verdicts[3].message == (f"{verdicts[3].dataset_id} (tomo/recon): not checked (too "
                                   "few references: 3 with this configuration, 5 needed)")
    assert len(verdicts[3].reference_ids) == 3
    assert {v.verdict for v in verdicts[5:]} == {"pass"}
    assert clean.verdict == "pass", clean.message
    assert len(clean.reference_ids) == 8
    names = {t.name for t in clean.tests}
    assert {"histogram", "ring_max", "edge_level", "center_offset", "raw_dead_fraction"} <= names
    assert clean.finding() is None


@pytest.mark.parametrize(("fault", "test"), [("dead", "raw_dead_fraction"),
                                             ("gain", "edge_level"),
                                             ("center", "center_offset")])
def test_each_fault_is_caught(tomo_catalog, fault, test):
    _, _, faults, _ = tomo_catalog
    v = faults[fault]
    assert v.verdict == "fail", v.message
    assert test in [t.name for t in v.tests if not t.passed], v.message
    finding = v.finding()
    assert isinstance(finding, Finding)
    assert (finding.kind, finding.severity, finding.dataset_id) == ("quality", "warning",
                                                                     v.dataset_id)
    assert finding.magnitude > 5


def test_failed_products_are_not_references(tomo_catalog):
    cat, _, faults, clean = tomo_catalog
    assert not set(clean.reference_ids) & {v.dataset_id for v in faults.values()}
    table = quality_verdicts(cat, kind="tomo/recon", verdict="fail")
    assert set(table["dataset_id"]) == {v.dataset_id for v in faults.values()}
    assert quality_verdict(cat, faults["center"].dataset_id).tests == faults["center"].tests
    findings = quality_findings(cat)
    assert {f.dataset_id for f in findings if f.severity == "warning"} == {
        v.dataset_id for v in faults.values()}
    assert {f.kind for f in findings} == {"quality"}


def test_kinds_without_a_summary_are_refused(tomo_catalog):
    cat, verdicts, _, _ = tomo_catalog
    assert {"tomo/recon", "saxs/iq", "tomo/raw"} <= set(QUALITY_KINDS)
    raw = cat[verdicts[0].dataset_id].parents[0]
    (png,) = cat.finish_run(cat.start_run(dataset_id=raw.id, notebook="nb.ipynb",
                                          notebook_sha256=None, parameters={}),
                            state="completed", outputs=[{"path": raw.path, "kind": "image/png"}])
    with pytest.raises(ValueError, match=r"no quality summary for dataset .* 'image/png'"):
        check_product(cat, png)
    # what the flow calls: other kinds skipped, a product that cannot be read logged
    assert check_outputs(cat, [png, png.id]) == []
    assert check_outputs(cat, ["ds-does-not-exist"]) == []


def test_cli_show_prints_the_verdict(tomo_catalog, capsys):
    from spotkit.cli import main

    cat, _, faults, _ = tomo_catalog
    assert main(["--catalog", str(cat.url), "catalog", "show", faults["center"].dataset_id]) == 0
    out = capsys.readouterr().out
    assert "Quality check (keep-up, against references)" in out
    assert "verdict: FAIL" in out
    assert "FAIL center_offset:" in out
    assert main(["--catalog", str(cat.url), "catalog", "show", "--json",
                 faults["center"].dataset_id]) == 0
    assert json.loads(capsys.readouterr().out)["quality"]["verdict"] == "fail"


# -- storage and reference selection on both backends -----------------------------------------


def _scan(cat, folder, k, *, energy=25.0, when=None):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"raw_{k}.h5"
    simulate_tomo_scan(path, shape=(8, 4, 32), seed=0, energy_kev=energy,
                       start_time=when or DAY0 + dt.timedelta(hours=k))
    return cat.ingest(path)


def test_verdicts_stored_and_references_chosen(catalog_url, tmp_path):
    with open_catalog(catalog_url) as cat:
        scans = [_scan(cat, tmp_path / "a", k) for k in range(5)]
        verdicts = [check_product(cat, s, min_references=3) for s in scans]
        assert [v.verdict for v in verdicts] == ["no reference"] * 3 + ["pass"] * 2
        # stored, readable back, as a table too
        back = quality_verdict(cat, scans[4].id)
        assert back.verdict == "pass"
        assert back.reference_ids == (scans[3].id, scans[2].id, scans[1].id, scans[0].id)
        assert back.summary == verdicts[4].summary
        assert list(quality_verdicts(cat)["dataset_id"])[:1] == [scans[4].id]
        # a quarantined product is no reference
        cat.set_status(scans[3].id, "quarantined", reason="operator: bad sample")
        refs = select_references(cat, scans[4], min_references=3)
        assert scans[3].id not in refs.ids
        assert refs.usable
        # a checked-again product replaces its row
        check_product(cat, scans[4], min_references=3)
        assert (quality_verdicts(cat)["dataset_id"] == scans[4].id).sum() == 1


def test_new_configuration_and_stale_references(catalog_url, tmp_path):
    with open_catalog(catalog_url) as cat:
        for k in range(4):
            check_product(cat, _scan(cat, tmp_path / "a", k), min_references=3)
        # another energy: another configuration, no references yet
        other = _scan(cat, tmp_path / "b", 10, energy=30.0)
        assert configuration(cat, other)["instrument"]["energy_kev"] == 30.0
        v = check_product(cat, other, min_references=3)
        assert v.verdict == "no reference"
        assert "too few references: 0 with this configuration, 3 needed" in v.reasons[0]
        assert "configuration changed" in v.reasons[0]
        assert "instrument.energy_kev: 25.0 -> 30.0" in v.reasons[0]
        # same configuration, 60 days after the newest reference: stale
        late = _scan(cat, tmp_path / "c", 20, when=DAY0 + dt.timedelta(days=60))
        v = check_product(cat, late, min_references=3, max_age_days=30)
        assert v.verdict == "no reference"
        assert "references are stale" in v.reasons[0]
        assert v.finding().severity == "info"


def test_configuration_ignores_per_run_parameters(tmp_path):
    with open_catalog(tmp_path / "catalog.db") as cat:
        a = _product(cat, tmp_path / "a", 1)
        b = _product(cat, tmp_path / "b", 2)  # other output_dir and dataset_id
        c = _product(cat, tmp_path / "c", 3, params={"stripe_method": "sorting"})
        d = _product(cat, tmp_path / "d", 4, notebook="other.ipynb")
        ca, cb, cc, cd = (configuration(cat, p) for p in (a, b, c, d))
        assert ca == cb
        assert ca["parameters"] == {"stripe_method": "fw"}
        assert cc != ca
        assert cd != ca
        assert cd["notebook"] == "other.ipynb"


def test_iq_products_read_from_files_with_their_raw_frames(tmp_path, tiny_saxs):
    """saxs/reduced (NXcanSAS, a frame series) and saxs/iq (q, intensity, sigma in HDF5)
    are summarised from their files; the raw frames' dead pixels come along."""
    from spotkit.io import write_nxcansas
    from spotkit.monitor import summarize_dataset

    q = np.linspace(0.1, 2.0, 60)
    series = np.stack([1 / q, 1.1 / q, 0.9 / q])
    with open_catalog(tmp_path / "catalog.db") as cat:
        raw = cat.ingest(tiny_saxs[0])
        nx = write_nxcansas(tmp_path / "reduced.h5", (q, series), q_unit="1/nm")
        reduced = cat.register_derived(files=[{"path": nx, "format": "NXcanSAS"}],
                                       kind="saxs/reduced", parents=[raw])
        with h5py.File(tmp_path / "iq.h5", "w") as f:
            f["q"], f["intensity"], f["sigma"] = q, series, 0.01 * series
        iq = cat.register_derived(files=[{"path": tmp_path / "iq.h5", "key": "/intensity"}],
                                  kind="saxs/iq", parents=[raw])
        for product in (reduced, iq):
            s = summarize_dataset(cat, product)
            assert s.family == "iq"
            assert s.curves["intensity"] == pytest.approx(tuple(1 / q))
            assert s.scalars["raw_dead_fraction"] < 1e-3  # the beamstop's edge, a few pixels
            assert s.detail["raw"]["id"] == raw.id
        assert summarize_dataset(cat, raw).family == "saxs_raw"
