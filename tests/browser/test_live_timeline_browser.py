"""LiveTimeline in a real JupyterLab, driven by headless Chromium, while frames are written.

A notebook starts the live twin writing a SAXS series in real time (a transition at a known
frame), follows it with a LiveSession in a thread and shows a LiveTimeline. The browser
checks that the widget arrived, that its timeline and I(q) images change while the detector
writes (the kernel pushes new drawings without anyone touching the page), that the status
line counts frames up to "finished", and finally runs a cell that prints, from the kernel,
what the widget's model holds.
"""

from __future__ import annotations

import re
import time

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

N_FRAMES = 40
CELLS = [
    "import tempfile, threading\n"
    "from pathlib import Path\n"
    "from spotkit.catalog import open_catalog\n"
    "from spotkit.live import LiveSession\n"
    "from spotkit.sim import LiveSeriesWriter, Transition\n"
    "from spotkit.widgets import LiveTimeline\n"
    "work = Path(tempfile.mkdtemp(prefix='spotkit-live-browser-'))\n"
    "catalog = open_catalog(work / 'catalog.db')\n"
    f"writer = LiveSeriesWriter(work / 'film.h5', n_frames={N_FRAMES}, frame_interval_s=1.0,\n"
    "                          time_scale=0.25, shape=(60, 80), seed=5,\n"
    "                          transitions=[Transition(20, 'radius_nm', 7.0, over=3)])\n"
    "live = LiveSession(writer.path, catalog=catalog, npt=100)\n"
    "writer.start()\n"
    "follower = threading.Thread(target=live.run, kwargs={'idle_timeout': 10}, daemon=True)\n"
    "follower.start()\n"
    "while live.dataset_id is None:\n"
    "    follower.join(0.05)\n"
    "timeline = LiveTimeline(catalog, live.dataset_id, refresh=0.3)\n"
    "timeline",
    "timeline.refresh()\n"
    "print(f'MODEL frames={timeline.model.n_frames} onsets={list(timeline.model.onsets)} '\n"
    "      f'truth={list(writer.truth.onset_frames)} state={timeline.model.status[\"state\"]}')",
]
STATUS = re.compile(r"(\d+) of (\d+) frames done")


def test_live_timeline_updates_in_jupyterlab(lab_server, page):
    from playwright.sync_api import expect

    cells, _ = lab_server.open_and_run_all(page, "live_timeline.ipynb", CELLS)

    view = page.locator(".spotkit-live-timeline")
    expect(view).to_be_visible(timeout=60_000)
    timeline = view.locator("img.spotkit-lt-timeline")
    profile = view.locator("img.spotkit-lt-profile")
    status = view.locator(".spotkit-lt-status")
    expect(timeline).to_have_attribute("src", re.compile(r"^blob:"), timeout=30_000)

    # while the detector writes (about 10 s), the drawings and the counts move on their own
    drawings, counts = set(), []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        drawings.add(timeline.get_attribute("src"))
        match = STATUS.search(status.inner_text())
        if match:
            counts.append(int(match.group(1)))
        if "finished" in status.inner_text():
            break
        page.wait_for_timeout(250)
    expect(status).to_contain_text("finished", timeout=30_000)
    expect(status).to_contain_text(f"{N_FRAMES} of {N_FRAMES} frames done")
    assert len(drawings) >= 3, f"the timeline was drawn {len(drawings)} times while written"
    assert len(set(counts)) >= 3, f"frames done seen: {sorted(set(counts))}"
    assert counts == sorted(counts), counts  # the count only goes up
    for img in (timeline, profile):
        expect(img).to_have_attribute("src", re.compile(r"^blob:"))
        img.evaluate("img => img.decode()")  # a PNG that the browser can show
        assert img.evaluate("img => img.naturalWidth") >= 300

    # a later cell, run from the browser, prints what the kernel's model holds
    last = cells.nth(len(CELLS) - 1)
    last.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    output = last.locator(".jp-OutputArea-output")
    expect(output).to_have_text(re.compile(rf"MODEL frames={N_FRAMES} onsets=\[\d+\] "
                                           r"truth=\[20\] state=finished"), timeout=30_000)
    onset = int(re.search(r"onsets=\[(\d+)\]", output.inner_text()).group(1))
    assert 18 <= onset <= 26, onset  # the transition starts at 20 and takes 3 frames
