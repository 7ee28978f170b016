"""CenterFinder in a real JupyterLab, driven by headless Chromium.

A notebook simulates a small scan and shows a CenterFinder; the browser runs all cells,
moves the slider with the keyboard and with the mouse, checks that the label and the image
follow, presses "Use this centre" and finally runs a cell that prints, from the kernel, the
value the widget received.
"""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

STEP = 0.5
CELLS = [
    "from spotkit.sim import simulate_tomo_scan\n"
    "from spotkit.widgets import CenterFinder\n"
    "truth = simulate_tomo_scan('scan.h5', shape=(121, 3, 96), center_offset=3.5, seed=3,\n"
    "                           ring_columns=0, overwrite=True)",
    f"finder = CenterFinder('scan.h5', around=3, step={STEP})\n"
    "chosen = []\n"
    "finder.on_select(chosen.append)\n"
    "finder",
    "print(f'CHOSEN value={finder.value} callbacks={chosen} truth={truth.center}')",
]
LABEL = re.compile(r"^centre = (\d+(?:\.\d+)?) px · entropy = \S+$")


def _centre(label_text: str) -> float:
    match = LABEL.match(label_text.strip())
    assert match, f"unexpected label {label_text!r}"
    return float(match.group(1))


def test_center_finder_in_jupyterlab(lab_server, page):
    from playwright.sync_api import expect

    cells, _ = lab_server.open_and_run_all(page, "center_finder.ipynb", CELLS)  # as a person

    finder = page.locator(".spotkit-center-finder")
    expect(finder).to_be_visible(timeout=60_000)
    label = finder.locator(".spotkit-cf-label")
    image = finder.locator("img.spotkit-cf-image")
    expect(label).to_have_text(LABEL)
    expect(image).to_have_attribute("src", re.compile(r"^blob:"))
    image.evaluate("img => img.decode()")  # the PNG arrived and decodes
    assert image.evaluate("img => img.naturalWidth") >= 384
    start = _centre(label.inner_text())
    src = image.get_attribute("src")

    # keyboard: two steps to the right
    handle = finder.locator(".spotkit-cf-slider .noUi-handle")
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expected = start + 2 * STEP
    expect(label).to_have_text(re.compile(rf"^centre = {expected:.1f} px"))
    expect(image).not_to_have_attribute("src", src)
    readout = finder.locator(".spotkit-cf-slider .widget-readout")
    expect(readout).to_have_text(f"{expected:.1f}")

    # mouse: drag the handle well to the left
    src = image.get_attribute("src")
    box = handle.bounding_box()
    track = finder.locator(".spotkit-cf-slider .noUi-target").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 0.4 * track["width"], y, steps=8)
    page.mouse.up()
    expect(label).not_to_have_text(re.compile(rf"^centre = {expected:.1f} px"))
    expect(image).not_to_have_attribute("src", src)
    dragged = _centre(label.inner_text())
    assert dragged < expected
    expect(readout).to_have_text(f"{dragged:.1f}")

    # "Use this centre": the kernel stores it and says so
    finder.get_by_role("button", name="Use this centre").click()
    expect(finder.locator(".spotkit-cf-chosen")).to_have_text(f"chosen: {dragged:.1f} px")

    # a later cell, run from the browser, prints what the kernel received
    last = cells.nth(len(CELLS) - 1)
    last.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    expect(last.locator(".jp-OutputArea-output")).to_have_text(
        re.compile(rf"CHOSEN value={dragged:.1f} callbacks=\[{dragged:.1f}\] truth=51\.5"))
