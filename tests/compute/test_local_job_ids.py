"""Job ids of Local targets are unique in a process, whichever instance submits."""

from __future__ import annotations

from spotkit.compute import Local


def test_two_local_targets_never_share_a_job_id(tmp_path):
    ids = []
    for n in range(2):  # the flow makes one Local per job
        target = Local(max_workers=1)
        work = tmp_path / f"job{n}"
        work.mkdir()
        (work / "run.sh").write_text("true\n")
        job_id = target.submit_script(work / "run.sh", job_name=f"j{n}", workdir=work)
        ids.append(job_id)
        target.cancel(job_id)
    assert ids[0] != ids[1]
