"""One dataset, one notebook run: papermill execution recorded in the catalog.

The same notebook file is opened by a person in JupyterLab, run by papermill for one
dataset, and shipped inside a batch job; :func:`run_notebook` is the one entry point for
the run itself. Notebooks declare their outputs with :func:`declare_output`.
"""

from spotkit.runs._execute import RunResult, notebook_parameters, run_notebook
from spotkit.runs._kernel import ensure_kernel, kernel_name_for_env
from spotkit.runs._outputs import RESULT_MIMETYPE, declare_output, read_declared_outputs
from spotkit.runs._paths import pipeline_notebook

__all__ = [
    "RESULT_MIMETYPE",
    "RunResult",
    "declare_output",
    "ensure_kernel",
    "kernel_name_for_env",
    "notebook_parameters",
    "pipeline_notebook",
    "read_declared_outputs",
    "run_notebook",
]
