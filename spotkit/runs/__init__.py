"""One dataset, one notebook run: papermill execution recorded in the catalog.

The same notebook file is opened by a person in JupyterLab, run by papermill for one
dataset, and shipped inside a batch job; :func:`run_notebook` is the one entry point for
the run itself. Notebooks declare their outputs with :func:`declare_output`, the dataset
kinds they accept and the checks on their parameters in their metadata (``spotkit``), which
:func:`check_kind` and :func:`check_parameters` apply before anything is run or recorded.
:func:`resolve_notebook` is the one way a name (``"tomo_quicklook"``) or a path becomes a
notebook file, for the CLI, :func:`run_notebook` and :func:`spotkit.compute.submit` alike.
"""

from spotkit.runs._errors import NotebookKindError, NotebookParameterValueError, ParameterProblem
from spotkit.runs._execute import (
    RESERVED_PARAMETERS,
    RunResult,
    check_kind,
    check_parameters,
    notebook_kinds,
    notebook_parameters,
    run_notebook,
    software_versions,
)
from spotkit.runs._kernel import ensure_kernel, kernel_name_for_env
from spotkit.runs._outputs import RESULT_MIMETYPE, declare_output, read_declared_outputs
from spotkit.runs._paths import (
    pipeline_notebook,
    read_notebook,
    resolve_notebook,
    shipped_notebooks,
)

__all__ = [
    "RESERVED_PARAMETERS",
    "RESULT_MIMETYPE",
    "NotebookKindError",
    "NotebookParameterValueError",
    "ParameterProblem",
    "RunResult",
    "check_kind",
    "check_parameters",
    "declare_output",
    "ensure_kernel",
    "kernel_name_for_env",
    "notebook_kinds",
    "notebook_parameters",
    "pipeline_notebook",
    "read_declared_outputs",
    "read_notebook",
    "resolve_notebook",
    "run_notebook",
    "shipped_notebooks",
    "software_versions",
]
