"""JobMonitor in a real JupyterLab, driven by headless Chromium.

A notebook submits a real Local job that sleeps a few seconds and shows a JobMonitor. The
browser runs all cells once, then only watches: the table shows RUNNING, a later cell runs
meanwhile (the kernel is free), and the table turns to COMPLETED without any cell being
run again, which only a refresh that does not block the kernel can do. "Logs" then shows
the job's output.
"""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

SLEEP = 10
CELLS = [
    "import pathlib\n"
    "from spotkit.compute import Job, Local\n"
    "from spotkit.widgets import JobMonitor\n"
    "here = pathlib.Path('.').resolve()\n"
    "script = here / 'sleepy.sh'\n"
    "script.write_text('#!/bin/bash\\necho hello from the job\\n'\n"
    f"                  'sleep {SLEEP}\\necho job done >&2\\n')\n"
    "target = Local(min_poll=0.2)\n"
    "job = Job(target.submit_script(script, job_name='sleepy', workdir=here), target)\n"
    "monitor = JobMonitor([job], refresh=0.5)\n"
    "monitor",
    "print(f'KERNEL FREE while job {job.id} is {job.state.value}')",
]


def test_job_monitor_refreshes_without_rerunning_cells(lab_server, page):
    from playwright.sync_api import expect

    # Run All once, as a person would; then only watch
    cells, kernel_status = lab_server.open_and_run_all(page, "job_monitor.ipynb", CELLS)

    monitor = page.locator(".spotkit-job-monitor")
    expect(monitor).to_be_visible(timeout=60_000)
    state = monitor.locator(".spotkit-jm-state")
    expect(state).to_have_count(1)
    expect(state).to_have_text("RUNNING", timeout=30_000)

    # the next cell ran while the job runs: the monitor does not hold the kernel
    second = cells.nth(1).locator(".jp-OutputArea-output")
    expect(second).to_have_text(re.compile(r"KERNEL FREE while job local-\S+ is RUNNING"),
                                timeout=30_000)
    expect(kernel_status).to_have_text(re.compile(r"\| Idle$"))
    expect(state).to_have_text("RUNNING")
    prompts = [cells.nth(i).locator(".jp-InputPrompt").inner_text() for i in range(2)]

    # no cell runs again, yet the table follows the job to its end
    expect(state).to_have_text("COMPLETED", timeout=(SLEEP + 30) * 1000)
    expect(monitor.locator(".spotkit-jm-exit-code")).to_have_text("0")
    expect(monitor.locator(".spotkit-jm-status")).to_contain_text("1 job: 1 succeeded")
    expect(monitor.locator(".spotkit-jm-status")).to_contain_text("all finished")
    assert [cells.nth(i).locator(".jp-InputPrompt").inner_text() for i in range(2)] == prompts
    expect(monitor.locator(".spotkit-jm-cancel-button")).to_be_disabled()

    # "Logs" shows what the job wrote
    logs = monitor.locator(".spotkit-jm-logs textarea")
    expect(logs).to_be_hidden()
    monitor.locator(".spotkit-jm-logs-button").click()
    expect(logs).to_be_visible()
    expect(logs).to_have_value(re.compile(r"--- stdout .*---\nhello from the job\n"
                                          r"--- stderr .*---\n.*job done\n", re.DOTALL))
