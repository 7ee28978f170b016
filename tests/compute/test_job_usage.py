"""spotkit.compute.job_usage: what a job used, from its scheduler's accounting.

The parsing of full ``sacct`` accounting (steps with MaxRSS and TotalCPU) is checked on
sacct's own output format without a cluster; the real test Slurm (session fixture
``slurm``; accounting storage off, jobcomp/filetxt on, as on this machine) is asked in one
marked test.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from spotkit.compute import Job, JobState, Local, Slurm, job_usage
from spotkit.compute._usage import slurm_bytes, slurm_seconds


def test_durations_and_sizes():
    assert slurm_seconds("2-00:00:01") == 172801.0
    assert slurm_seconds("01:02:03") == 3723.0
    assert slurm_seconds("02:03.250") == 123.25
    assert slurm_seconds("INVALID") is None
    assert slurm_bytes("0") == 0
    assert slurm_bytes("3G") == 3 * 1024**3
    assert slurm_bytes("lots") is None


class _Sacct(Slurm):
    """A Slurm whose commands answer with recorded text (full accounting on)."""

    def __init__(self, answers):
        super().__init__(partition="debug")
        self.answers = answers
        self.calls = []

    def _run(self, argv, *, what):
        self.calls.append(argv[:2])
        code, out, err = self.answers[argv[1] if argv[1] == "-c" else argv[0]]
        return subprocess.CompletedProcess(argv, code, out, err)


def test_full_accounting_takes_memory_and_cpu_from_the_steps():
    out = ("42|OUT_OF_MEMORY|0:125|00:10:00|07:30.500|00:40:00||4|nid001\n"
           "42.batch|OUT_OF_MEMORY|0:125|00:10:00|07:00.250|00:40:00|3500M|4|nid001\n"
           "42.extern|COMPLETED|0:0|00:10:00|00:00.001|00:40:00|1024K|4|nid001\n")
    target = _Sacct({"sacct": (0, out, "")})
    usage = job_usage(Job("42", target))
    assert usage.state is JobState.OUT_OF_MEMORY
    assert usage.exit_code == 0
    assert (usage.elapsed, usage.cpus, usage.cpu_time, usage.cpu_allocated) == (
        600.0, 4, 450.5, 2400.0)
    assert usage.max_rss == 3500 * 1024**2
    assert usage.cpu_efficiency == pytest.approx(450.5 / 2400)
    assert (usage.source, usage.missing, usage.nodes) == ("sacct", (), "nid001")
    assert usage.as_dict()["state"] == "OUT_OF_MEMORY"


def test_accounting_off_falls_back_to_jobcomp_and_says_what_is_missing():
    target = _Sacct({"sacct": (1, "", "Slurm accounting storage is disabled"),
                     "-c": (0, "7|FAILED|2:0|00:00:03||||2|vm\n", "")})
    usage = job_usage(Job("7", target))
    assert (usage.state, usage.exit_code, usage.elapsed, usage.cpus) == (
        JobState.FAILED, 2, 3.0, 2)
    assert usage.cpu_allocated == 6.0  # elapsed x CPUs
    assert usage.source == "sacct -c"
    assert usage.missing == ("cpu_time", "max_rss")
    assert target.calls == [["sacct", "-n"], ["sacct", "-c"]]


def test_local_job_reports_its_status(tmp_path):
    script = tmp_path / "ok.sh"
    script.write_text("sleep 0.2")
    target = Local(min_poll=0.05)
    job = Job(target.submit_script(script, job_name="ok", workdir=tmp_path), target)
    job.wait(timeout=60)
    usage = job_usage(job)
    assert usage.state is JobState.COMPLETED
    assert usage.elapsed >= 0.1
    assert usage.source == "status"
    with pytest.raises(TypeError, match=r"expected a spotkit\.compute\.Job"):
        job_usage("1")


@pytest.mark.slurm
@pytest.mark.slow
def test_usage_from_the_real_test_slurm(slurm, tmp_path):
    target = Slurm(partition=slurm.partition, min_poll=0.2,
                   env={"SLURM_CONF": str(slurm.conf)})
    script = tmp_path / "work.sh"
    script.write_text("#!/bin/bash\nsleep 1.2\nexit 2\n")
    job = Job(target.submit_script(script, job_name="usage", workdir=tmp_path), target)
    job.wait(timeout=120)
    deadline = time.monotonic() + 30
    usage = job_usage(job)
    while usage.elapsed is None and time.monotonic() < deadline:  # jobcomp written at end
        time.sleep(0.3)
        usage = job_usage(job)
    assert usage.state is JobState.FAILED
    assert usage.exit_code == 2
    assert 1.0 <= usage.elapsed <= 30
    assert usage.cpus >= 1
    assert usage.cpu_allocated == usage.elapsed * usage.cpus
    assert usage.nodes == slurm.node
    # this cluster has no accounting storage nor job accounting: said, not guessed
    assert usage.source == "sacct -c"
    assert set(usage.missing) == {"cpu_time", "max_rss"}
