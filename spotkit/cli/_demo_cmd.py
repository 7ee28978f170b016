"""``spotkit demo``: a simulated beamline session, processed end to end, then summarised."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from spotkit import kinds
from spotkit.cli._output import _out, _table
from spotkit.errors import SpotkitError

logger = logging.getLogger("spotkit.cli")


def cmd_demo(args) -> int:
    if args.catalog is not None:
        raise SpotkitError(
            f"spotkit demo makes its own catalog, {Path(args.workdir) / 'catalog.db'}, and "
            f"does not use --catalog {args.catalog}; drop --catalog (choose the folder with "
            "--workdir)")
    from tqdm import tqdm

    from spotkit.demo import SAXS_SERIES, TOMO_SCANS, run_demo

    n_steps = len(TOMO_SCANS) + len(SAXS_SERIES) + 2  # write each; the flow; export
    with tqdm(total=n_steps, desc="spotkit demo", unit="step", file=sys.stderr,
              disable=args.quiet) as bar:
        def progress(msg: str) -> None:
            bar.set_postfix_str(msg[:60])
            logger.info("%s", msg)
            bar.update(1)

        report = run_demo(args.workdir, progress=progress)

    from spotkit.catalog import open_catalog

    cat = open_catalog(report.catalog_path, create=False)
    _out(f"\nspotkit demo finished in {report.seconds:.1f} s; workdir {report.workdir}\n")
    _out("Datasets")
    rows = []
    for ds in report.raw:
        rows.append({"id": ds.id, "kind": ds.kind, "beamline": ds.beamline, "sample": ds.sample,
                     "file": ds.path})
    for run in report.runs:
        for out_id in run.outputs:
            out = cat[out_id]
            rows.append({"id": out.id, "kind": out.kind, "beamline": out.beamline,
                         "sample": out.sample, "file": out.path})
    _out(_table(rows, ["id", "kind", "beamline", "sample", "file"]))
    _out("\nRuns")
    run_rows = []
    for run in report.runs:
        seconds = run.duration.total_seconds() if run.duration is not None else float("nan")
        run_rows.append({"run": run.id, "dataset": run.dataset_id,
                         "notebook": Path(run.notebook).name, "state": run.state,
                         "seconds": f"{seconds:.1f}", "outputs": len(run.outputs),
                         "executed notebook": run.output_notebook})
    _out(_table(run_rows, ["run", "dataset", "notebook", "state", "seconds", "outputs",
                           "executed notebook"]))
    _change_summary(cat, report)
    _out(f"\nCatalog: {report.catalog_path}\nIntake catalog: {report.intake_catalog}")
    _out(f"Try: spotkit --catalog {report.catalog_path} catalog search --beamline 8.3.2")
    _out(f"The portal, in a JupyterLab cell: {report.portal_line}")
    cat.close()
    return 0


def _change_summary(cat, report) -> None:
    """One line per SAXS series: the change found (and the twin's truth), frames kept."""
    import json

    from spotkit.demo import SAXS_SERIES

    truth = {name: kw.get("onset_frame") for name, kw in SAXS_SERIES}
    for ds in report.raw:
        if ds.kind != kinds.SAXS_RAW:
            continue
        reports = [cat[o] for r in report.runs if r.dataset_id == ds.id for o in r.outputs
                   if cat[o].kind == kinds.SAXS_CHANGE_REPORT]
        if not reports:
            continue
        doc = json.loads(Path(reports[0].path).read_text())
        onsets = ", ".join(f"frame {c['onset']} (confidence {c['confidence']:.2f})"
                           for c in doc["changes"]) or "none"
        red = doc["reduction"]
        marks = cat.frame_marks(ds)
        interest = sum(m["label"] == "of interest" for m in marks)
        _out(f"\nChange detection on {Path(ds.path).name}: change at {onsets}; the twin put "
             f"it at frame {truth.get(Path(ds.path).name)}. Frames marked of interest: "
             f"{interest} of {red['n_frames']} ({red['reduction_factor']:.1f}x less to move).")
