"""Start-up of spotkit's own processes: the ``spotkit`` command and a batch job's worker.

Every notebook run imports nbformat, which imports jsonschema, whose format checkers import
``rfc3987_syntax`` when it is installed (``jsonschema[format-nongpl]``, a dependency of the
Jupyter stack). That module compiles some thirty Earley grammars when it is imported: about
one second of CPU in every process that runs a notebook, for IRI formats that no notebook
schema uses (python-jsonschema/jsonschema#1428). :func:`defer_iri_grammar` puts a small
stand-in in its place whose functions import the real module on first use, so a process
that never checks an IRI never pays for it and one that does gets the same answers.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
import types
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["defer_iri_grammar"]

_IRI_MODULE = "rfc3987_syntax"
_lock = threading.Lock()


def defer_iri_grammar() -> bool:
    """Import ``rfc3987_syntax`` only when one of its functions is first called.

    Returns
    -------
    bool
        True when a stand-in was installed; False when the module is already imported or
        not installed (nothing to defer).

    Examples
    --------
    >>> import sys
    >>> defer_iri_grammar() in (True, False)
    True
    >>> defer_iri_grammar()  # a second call finds the stand-in (or the module) in place
    False
    """
    if _IRI_MODULE in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(_IRI_MODULE)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    stand_in = types.ModuleType(_IRI_MODULE, "spotkit's stand-in: the real module is "
                                "imported on first use (spotkit._startup)")
    if spec.submodule_search_locations is not None:  # its submodules import as they would
        stand_in.__path__ = list(spec.submodule_search_locations)
    loaded: list[Any] = []

    def real() -> Any:
        with _lock:
            if not loaded:
                if sys.modules.get(_IRI_MODULE) is stand_in:
                    del sys.modules[_IRI_MODULE]
                logger.debug("importing %s on first use", _IRI_MODULE)
                loaded.append(importlib.import_module(_IRI_MODULE))
        return loaded[0]

    def is_valid_syntax(*args: Any, **kwargs: Any) -> Any:
        return real().is_valid_syntax(*args, **kwargs)

    def __getattr__(name: str) -> Any:  # PEP 562: any other name, from the real module
        if name.startswith("__"):  # the import system asks for __path__, __spec__...
            raise AttributeError(name)
        return getattr(real(), name)

    stand_in.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[_IRI_MODULE] = stand_in
    return True
