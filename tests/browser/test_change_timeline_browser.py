"""ChangeTimeline in a real JupyterLab, driven by headless Chromium.

A notebook simulates a small SAXS series in which a ring appears at a known frame, detects
the change and shows a ChangeTimeline. The browser runs all cells, checks the timeline
plot and the three panels arrived, presses "next onset" and checks that the slider, the
label and every panel moved to the detected onset (the truth's onset within one frame);
finally it runs a cell that prints, from the kernel, the frame the widget selected.
"""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

CELLS = [
    "from spotkit.change import detect_changes, reduction_policy\n"
    "from spotkit.io import open_saxs\n"
    "from spotkit.io import load_geometry\n"
    "from spotkit.sim import simulate_saxs_series\n"
    "from spotkit.widgets import ChangeTimeline\n"
    "truth = simulate_saxs_series('series.h5', n_frames=30, onset_frame=14, seed=1,\n"
    "                             shape=(64, 96), module_shape=(30, 45), module_gap=(2, 3),\n"
    "                             overwrite=True)\n"
    "frames = open_saxs('series.h5')\n"
    "result = detect_changes(frames)\n"
    "view = ChangeTimeline(frames, result=result, plan=reduction_policy(result),\n"
    "                      integrator=load_geometry(truth.poni_path), npt=120)\n"
    "view",
    "print(f'SELECTED frame={view.frame} onsets={list(view.model.onsets)} '\n"
    "      f'truth={truth.onset_frame}')",
]
LABEL = re.compile(r"^frame (\d+) · t = ")
PANELS = ("image", "map", "profile")


def _frame(label_text: str) -> int:
    match = LABEL.match(label_text.strip())
    assert match, f"unexpected label {label_text!r}"
    return int(match.group(1))


def test_change_timeline_in_jupyterlab(lab_server, page):
    from playwright.sync_api import expect

    cells, _ = lab_server.open_and_run_all(page, "change_timeline.ipynb", CELLS)

    view = page.locator(".spotkit-change-timeline")
    expect(view).to_be_visible(timeout=60_000)
    timeline = view.locator("img.spotkit-ct-timeline")
    expect(timeline).to_have_attribute("src", re.compile(r"^blob:"))
    timeline.evaluate("img => img.decode()")  # the PNG arrived and decodes
    assert timeline.evaluate("img => img.naturalWidth") >= 600
    expect(view.locator(".spotkit-ct-summary")).to_contain_text("onsets (confidence)")
    label = view.locator(".spotkit-ct-label")
    expect(label).to_have_text(LABEL)
    assert _frame(label.inner_text()) == 0
    sources = {}
    for name in PANELS:
        panel = view.locator(f"img.spotkit-ct-{name}")
        expect(panel).to_have_attribute("src", re.compile(r"^blob:"))
        panel.evaluate("img => img.decode()")
        sources[name] = panel.get_attribute("src")
    readout = view.locator(".spotkit-ct-slider .widget-readout")
    expect(readout).to_have_text("0")
    expect(view.get_by_role("button", name="previous onset")).to_be_disabled()

    # "next onset": slider, label and the three panels move to the onset
    view.get_by_role("button", name="next onset").click()
    expect(label).not_to_have_text(re.compile(r"^frame 0 "))
    onset = _frame(label.inner_text())
    assert abs(onset - 14) <= 1, onset
    expect(readout).to_have_text(str(onset))
    expect(label).to_contain_text("change ")
    expect(label).to_contain_text("of interest")
    for name in PANELS:
        panel = view.locator(f"img.spotkit-ct-{name}")
        expect(panel).not_to_have_attribute("src", sources[name])
        panel.evaluate("img => img.decode()")
    expect(view.get_by_role("button", name="next onset")).to_be_disabled()

    # a later cell, run from the browser, prints what the kernel has selected
    last = cells.nth(len(CELLS) - 1)
    last.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    expect(last.locator(".jp-OutputArea-output")).to_have_text(
        re.compile(rf"SELECTED frame={onset} onsets=\[{onset}\] truth=14"))
