"""Frame marks given while a series is written are those of the reduction policy applied to
the whole series at the end (labels, reasons, reduction factor), also across a restart."""

from __future__ import annotations

import random

import pytest

from spotkit.change import reduction_policy
from spotkit.live._marks import _Marker


def _series(rng, n):
    """Changes (onset, end, confirmed at) as an online detector reports them."""
    out, t = [], rng.randint(3, 30)
    while t < n:
        onset = t
        end = onset + rng.randint(0, 5)
        out.append((onset, end, end + rng.randint(1, 8)))
        t = out[-1][2] + rng.randint(1, 50)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_incremental_marks_are_the_whole_series_policy(seed):
    rng = random.Random(seed)
    for _ in range(40):
        n = rng.randint(1, 300)
        every, before, after = rng.choice([0, 5, 20]), rng.randint(0, 4), rng.randint(0, 4)
        # a change is confirmed at most 13 frames after its onset here: lag covers it
        lag = rng.randint(13 + before, 70)
        changes = _series(rng, n)
        marker = _Marker(before=before, after=after, every=every, lag=lag)
        marks: dict[int, tuple[str, str]] = {}
        done, restarted = 0, False
        while done < n:
            done = min(n, done + rng.randint(1, 30))
            finished = done == n
            for onset, end, at in changes:
                if (at < done or finished) and (onset, end) not in marker.events:
                    marker.add_event(onset, end)
            if not restarted and done > n // 2:  # a new session takes over
                restarted = True
                marker = _Marker(before=before, after=after, every=every, lag=lag)
                for e in sorted({(o, e) for o, e, at in changes if at < done or finished}):
                    marker.add_event(*e)
                marker.resume(marks)
            frames, labels, reasons = marker.due(done, finished=finished)
            marks.update(zip(frames, zip(labels, reasons, strict=True), strict=True))
        plan = reduction_policy([(o, min(e, n - 1)) for o, e, _ in changes], n_frames=n,
                                before=before, after=after, every=every)
        assert marks == {k: (str(plan.labels[k]),
                             plan.reasons[k] or "redundant: outside every change window")
                         for k in range(n)}
        assert marker.reduction_factor == pytest.approx(plan.reduction_factor)


def test_a_frame_is_redundant_only_once_no_change_can_reach_it():
    marker = _Marker(before=3, after=3, every=0, lag=10)
    assert marker.due(10) == ([], [], [])  # nothing final yet, no change known
    frames, labels, _ = marker.due(15)
    assert frames == [0, 1, 2, 3, 4]
    assert set(labels) == {"redundant"}
    marker.add_event(12, 14)  # confirmed at frame 16: its window is of interest at once
    frames, labels, reasons = marker.due(17)
    assert frames == [5, 6, *range(9, 17)]
    assert labels[:2] == ["redundant"] * 2
    assert set(labels[2:]) == {"of interest"}
    assert reasons[2] == "change window 9..16"
    frames, labels, reasons = marker.due(19)  # the window grows to its end + after
    assert frames == [7, 8, *range(9, 18)]
    assert reasons[2:] == ["change window 9..17"] * 9
    with pytest.raises(ValueError, match="every must be an integer"):
        _Marker(every=-1)
