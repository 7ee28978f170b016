"""Errors of notebook runs refused up front: bad parameters, a dataset of the wrong kind.

Both derive from :class:`spotkit.errors.SpotkitError` (and :class:`ValueError`) and carry the
facts as attributes, so the CLI and widgets can present them as they like.
"""

from __future__ import annotations

from spotkit.errors import (  # they live in spotkit.errors; kept importable from here
    NotebookKindError,
    NotebookParameterValueError,
    ParameterProblem,
)

__all__ = ["NotebookKindError", "NotebookParameterValueError",
           "ParameterProblem"]
