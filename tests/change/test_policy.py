"""Reduction policy: frames of interest around changes, a sparse sample of the rest."""

from __future__ import annotations

import numpy as np
import pytest

from spotkit.change import LABELS, detect_changes, reduction_policy


def test_keeps_every_change_frame_of_the_twin(tmp_path):
    from .conftest import twin

    truth, frames = twin(tmp_path / "long.h5", onset=120, seed=21, n_frames=240)
    result = detect_changes(frames, maps=False)
    plan = reduction_policy(result)
    amp = truth.ring_amplitude
    changing = np.flatnonzero(np.diff(amp, prepend=amp[0]) != 0)  # the 5 growth frames
    assert changing.size == 5
    assert plan.keep[changing].all()
    assert (plan.labels[changing] == "of interest").all()
    assert plan.reduction_factor >= 10  # change occupies 2 % of the frames
    assert plan.n_frames == 240
    assert plan.n_keep == int(plan.keep.sum())
    assert plan.reduction_factor == pytest.approx(240 / plan.n_keep)


def test_windows_samples_and_reasons():
    plan = reduction_policy([(40, 44), 42, 90], n_frames=100, before=2, after=3, every=25)
    assert plan.windows == ((38, 47), (88, 93))
    assert set(plan.labels) <= set(LABELS)
    interest = np.flatnonzero(plan.labels == "of interest")
    assert interest.tolist() == [*range(38, 48), *range(88, 94)]
    sampled = np.flatnonzero(plan.keep & (plan.labels == "redundant")).tolist()
    assert sampled == [0, 25, 50, 75, 99]
    assert plan.reasons[99] == "last frame"
    assert plan.reasons[25].startswith("sample")
    assert plan.reasons[40] == "change window 38..47"
    assert plan.reasons[30] == ""
    assert plan.summary()["windows"] == [[38, 47], [88, 93]]
    none = reduction_policy([], n_frames=100, every=0)
    assert none.n_keep == 2
    assert none.reduction_factor == 50


def test_bad_input():
    with pytest.raises(ValueError, match="n_frames is required"):
        reduction_policy([3])
    with pytest.raises(ValueError, match="outside the series"):
        reduction_policy([120], n_frames=100)
    with pytest.raises(ValueError, match="every"):
        reduction_policy([3], n_frames=10, every=-1)
    with pytest.raises(ValueError, match="n_frames"):
        reduction_policy([], n_frames=0)
