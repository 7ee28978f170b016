"""JupyterLab widgets for following spotkit's work.

- :class:`JobMonitor` — a live table of batch jobs (state, elapsed and queue time, logs
  and cancel buttons) that refreshes in the background without blocking the kernel;
- :class:`JobMonitorModel` — the same jobs and rows without any widget (plain Python);
- :class:`ChangeTimeline` — a scattering series by its change features: feature against
  frame with the detected onsets, and for the selected frame its image, spatial change map
  and I(q) (:mod:`spotkit.change`);
- :class:`ChangeTimelineModel` — the same series, onsets, maps and selection in plain Python;
- :class:`LiveTimeline` — a series while ``spotkit live`` records it: features with the
  onsets and flagged frames, fitted parameters with error bars, how far behind, the latest
  I(q) with the fit curve, redrawn from a background thread;
- :class:`LiveTimelineModel` — the same growing series in plain Python;
- :class:`CenterFinder` — pick the centre of rotation by eye: a slider over the slices
  reconstructed at candidate centres (:func:`spotkit.tomo.center_sweep`), their score and
  the automatic estimate, and a "Use this centre" button;
- :class:`CenterFinderModel` — the same candidates, slices, scores and choice in plain Python;
- :func:`portal` / :class:`Portal` — one dashboard (tabs for data, viewers, flow, jobs,
  monitor and live series) refreshed in a background thread; :data:`PANELS` names its panels.

ipywidgets is an optional dependency (``pip install "spotkit[lab]"``): it is imported when
a :class:`JobMonitor` or a :class:`ChangeTimeline` is made, and :class:`CenterFinder` (with
its model, which reads scans through :mod:`spotkit.pipelines`) on first use, so the models
work without it.

Examples
--------
>>> import pathlib, tempfile
>>> from spotkit.compute import Job, Local
>>> from spotkit.widgets import JobMonitor, JobMonitorModel
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> script = folder / "hello.sh"
>>> _ = script.write_text("echo hello")
>>> target = Local(min_poll=0.05)
>>> job = Job(target.submit_script(script, job_name="hello", workdir=folder), target)
>>> _ = job.wait(timeout=60)
>>> JobMonitorModel([job]).refresh()[0]["outcome"]
'succeeded'
>>> JobMonitor([job], refresh=2)        # the live table, shown in JupyterLab  # doctest: +SKIP
"""

from spotkit.widgets._change_timeline import ChangeTimeline, ChangeTimelineModel
from spotkit.widgets._jobmonitor import JobMonitor, JobMonitorModel, format_seconds

__all__ = [
    "PANELS",
    "CenterFinder",
    "CenterFinderModel",
    "ChangeTimeline",
    "ChangeTimelineModel",
    "DataPanel",
    "DataPanelModel",
    "FlowPanel",
    "FlowPanelModel",
    "JobMonitor",
    "JobMonitorModel",
    "JobsPanel",
    "JobsPanelModel",
    "LivePanel",
    "LivePanelModel",
    "LiveTimeline",
    "LiveTimelineModel",
    "MonitorPanel",
    "MonitorPanelModel",
    "Portal",
    "PortalPanelWarning",
    "SliceViewer",
    "SliceViewerModel",
    "ViewerPanel",
    "ViewerPanelModel",
    "format_seconds",
    "portal",
]

#: Loaded on first use: CenterFinder subclasses an ipywidgets widget, and its model reads
#: scans through spotkit.pipelines (spotkit.io, spotkit.tomo).
_LAZY = {
    "CenterFinder": "spotkit.widgets._center_finder",
    "CenterFinderModel": "spotkit.widgets._center_finder_model",
    # the portal's panels and their plain-Python models
    "DataPanel": "spotkit.widgets._portal_data",
    "DataPanelModel": "spotkit.widgets._portal_data_model",
    "ViewerPanel": "spotkit.widgets._portal_viewers",
    "ViewerPanelModel": "spotkit.widgets._portal_viewers_model",
    "SliceViewer": "spotkit.widgets._slice_viewer",
    "SliceViewerModel": "spotkit.widgets._slice_viewer_model",
    "FlowPanel": "spotkit.widgets._portal_flow",
    "FlowPanelModel": "spotkit.widgets._portal_flow_model",
    "JobsPanel": "spotkit.widgets._portal_jobs",
    "JobsPanelModel": "spotkit.widgets._portal_jobs_model",
    "MonitorPanel": "spotkit.widgets._portal_monitor",
    "MonitorPanelModel": "spotkit.widgets._portal_monitor_model",
    "LivePanel": "spotkit.widgets._portal_live",
    "LivePanelModel": "spotkit.widgets._portal_live_model",
    # a live series (spotkit.live) as it is recorded
    "LiveTimeline": "spotkit.widgets._live_timeline",
    "LiveTimelineModel": "spotkit.widgets._live_timeline_model",
    **dict.fromkeys(("PANELS", "Portal", "PortalPanelWarning", "portal"),
                    "spotkit.widgets._portal"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
