"""Geometry from PONI files and from metadata; clear errors for missing or foreign geometry."""

from __future__ import annotations

import numpy as np
import pytest

from spotkit.errors import InputFileError
from spotkit.io import load_geometry, save_geometry
from spotkit.scattering import (
    GeometryError,
    check_geometry,
    geometry_from_metadata,
    geometry_summary,
    integrate_frames,
    make_geometry,
)


def test_poni_geometry_gives_the_twins_q_map(saxs, saxs_ai):
    q = saxs_ai.qArray(saxs.shape)  # nm^-1
    np.testing.assert_allclose(q, saxs.q_map(), rtol=1e-5, atol=1e-6)  # pyFAI: float32


def test_metadata_geometry_matches_the_poni(saxs, saxs_frames, saxs_ai):
    ai = geometry_from_metadata(saxs_frames)
    np.testing.assert_allclose(ai.qArray(saxs.shape), saxs_ai.qArray(saxs.shape), rtol=1e-5)
    summary = geometry_summary(ai)
    assert summary["beam_center"] == pytest.approx(list(saxs.beam_center))
    assert summary["distance_m"] == pytest.approx(saxs.distance_m)
    assert summary["energy_kev"] == pytest.approx(saxs.energy_kev, rel=1e-6)
    assert summary["shape"] == list(saxs.shape)


@pytest.mark.parametrize("field", ["energy_kev", "distance_m", "beam_center", "pixel_size_um"])
def test_missing_metadata_field_is_named(saxs_frames, field):
    meta = dict(saxs_frames.attrs)
    meta[field] = None if field != "beam_center" else [np.nan, np.nan]
    with pytest.raises(GeometryError, match=field) as err:
        geometry_from_metadata(meta)
    assert err.value.field == field


def test_inconsistent_energy_and_wavelength():
    with pytest.raises(GeometryError, match="inconsistent geometry"):
        make_geometry(energy_kev=10.0, wavelength_nm=0.15, distance_m=1.0, beam_center=(5, 5),
                      pixel_size_um=172)


def test_negative_distance_is_rejected():
    with pytest.raises(GeometryError, match="distance_m"):
        make_geometry(energy_kev=10.0, distance_m=-1.0, beam_center=(5, 5), pixel_size_um=172)


def test_poni_for_another_detector_fails_before_processing(saxs, saxs_frames, tmp_path):
    other = make_geometry(energy_kev=10, distance_m=2.0, beam_center=(800, 700),
                          pixel_size_um=172, shape=(1679, 1475))
    poni = save_geometry(other, tmp_path / "pilatus2m.poni")
    with pytest.raises(GeometryError, match=r"1679 x 1475.*195 x 487"):
        load_geometry(poni, shape=saxs.shape)
    ai = load_geometry(poni)
    with pytest.raises(GeometryError, match="another detector"):
        integrate_frames(saxs_frames, ai)
    with pytest.raises(GeometryError):
        check_geometry(ai, (195, 487))


def test_save_and_load_roundtrip(saxs_ai, tmp_path):
    path = save_geometry(saxs_ai, tmp_path / "g.poni")
    path = save_geometry(saxs_ai, path)  # overwriting does not append a second geometry
    back = load_geometry(path)
    assert back.dist == pytest.approx(saxs_ai.dist)
    assert back.poni1 == pytest.approx(saxs_ai.poni1)
    assert back.wavelength == pytest.approx(saxs_ai.wavelength)


def test_missing_and_bad_poni_files(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_geometry(tmp_path / "nope.poni")
    bad = tmp_path / "bad.poni"
    bad.write_text("Distance: 1.0\n")
    with pytest.raises(InputFileError, match=r"bad\.poni"):
        load_geometry(bad)


def test_the_old_scattering_names_of_the_geometry_files_still_work_and_warn(tmp_path, saxs_ai):
    import spotkit.io
    import spotkit.scattering as sc

    with pytest.warns(DeprecationWarning, match=r"moved to spotkit\.io\.save_geometry"):
        old_save = sc.save_geometry
    assert old_save is save_geometry
    with pytest.warns(DeprecationWarning, match=r"spotkit\.io\.load_geometry"):
        old_load = sc.load_geometry
    assert old_load is load_geometry
    with pytest.warns(DeprecationWarning, match=r"spotkit\.io\.ORIENTATIONS"):
        assert sc.ORIENTATIONS is spotkit.io.ORIENTATIONS
    # the old names still do the work
    with pytest.warns(DeprecationWarning, match="save_geometry"):
        path = sc.save_geometry(saxs_ai, tmp_path / "old.poni")
    with pytest.warns(DeprecationWarning, match="load_geometry"):
        assert sc.load_geometry(path).dist == pytest.approx(saxs_ai.dist)
    # and they are no longer in the science package's public list
    assert not {"load_geometry", "save_geometry", "ORIENTATIONS"} & set(sc.__all__)
