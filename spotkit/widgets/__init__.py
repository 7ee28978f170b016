"""JupyterLab widgets for following spotkit's work.

- :class:`JobMonitor` — a live table of batch jobs (state, elapsed and queue time, logs
  and cancel buttons) that refreshes in the background without blocking the kernel;
- :class:`JobMonitorModel` — the same jobs and rows without any widget (plain Python).

ipywidgets is an optional dependency (``pip install "spotkit[lab]"``): it is imported when
a :class:`JobMonitor` is made, so :class:`JobMonitorModel` works without it.

Examples
--------
>>> import spotkit
>>> from spotkit.compute import Local
>>> from spotkit.widgets import JobMonitor
>>> job = spotkit.submit("tomo_quicklook", ds, target=Local())   # doctest: +SKIP
>>> JobMonitor([job], refresh=2)                                  # doctest: +SKIP
"""

from spotkit.widgets._jobmonitor import JobMonitor, JobMonitorModel, format_seconds

__all__ = ["JobMonitor", "JobMonitorModel", "format_seconds"]
