"""papermill's local file I/O without changing the process's working directory.

papermill reads and writes local notebooks through one handler shared by the whole process.
``execute_notebook`` and ``inspect_notebook`` store the caller's working directory in it
(``local_file_io_cwd``) and every read and write then does ``os.chdir`` there and back. With
notebooks run from several threads (a watcher's workers, a dashboard) that is a race twice
over: a thread's ``chdir`` moves every other thread too, and two overlapping runs restore
each other's stored folder, so it stays at the first caller's folder for good - every later
read or write moves the process into a folder of the past (or fails once it is deleted).

:func:`install_local_handler` replaces that handler with one that keeps the stored folder per
thread and joins relative paths to it instead of changing directory: the same paths mean the
same files, and the process's working directory is never touched. :func:`import_papermill`
is how spotkit gets papermill: with that handler, and without the IRI grammar's import cost
(:mod:`spotkit._startup`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from typing import Any

from spotkit._startup import defer_iri_grammar

__all__ = ["import_papermill", "install_local_handler"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()


def import_papermill() -> Any:
    """papermill, imported as spotkit's notebook runs need it.

    Its import skips compiling jsonschema's IRI grammar (:func:`spotkit._startup.
    defer_iri_grammar`, ~1 s) and its local file I/O never changes the process's working
    directory (:func:`install_local_handler`).

    Returns
    -------
    module
        The ``papermill`` module.
    """
    defer_iri_grammar()
    import papermill

    install_local_handler()
    return papermill


def install_local_handler() -> bool:
    """Give papermill a local file handler that never calls ``os.chdir``.

    Only papermill's own ``LocalHandler`` is replaced: a handler someone registered on
    purpose is left alone.

    Returns
    -------
    bool
        True when this call installed it; False when it was already installed or papermill's
        local handler is not papermill's own.

    Examples
    --------
    >>> from spotkit.runs._papermill_io import install_local_handler
    >>> install_local_handler() in (True, False)
    True
    >>> from papermill.iorw import papermill_io
    >>> type(papermill_io.get_handler("local")).__name__
    'ThreadLocalCwdHandler'
    """
    from papermill.iorw import LocalHandler, papermill_io

    with _lock:
        current = papermill_io.get_handler("local")
        if type(current) is not LocalHandler:
            return False
        handlers = getattr(papermill_io, "_handlers", None)
        if not isinstance(handlers, list):  # a papermill whose registry looks different
            logger.debug("papermill's handler registry not recognised; its handler is kept")
            return False
        handler = _handler_class()()
        # in place: papermill takes the *last* "local" entry for a path (register() prepends)
        papermill_io._handlers = [(scheme, handler if h is current else h)
                                  for scheme, h in handlers]
        logger.debug("papermill's local file handler replaced by one without os.chdir")
        return True


@functools.cache
def _handler_class() -> type:
    """The handler class, made on first use (papermill is imported only when needed)."""
    from papermill.iorw import LocalHandler

    class ThreadLocalCwdHandler(LocalHandler):
        """papermill's ``LocalHandler``, its stored folder per thread and joined, not entered."""

        def __init__(self) -> None:
            self._local = threading.local()
            super().__init__()

        @property
        def _cwd(self):  # read and set by LocalHandler.cwd and local_file_io_cwd
            return getattr(self._local, "cwd", None)

        @_cwd.setter
        def _cwd(self, value) -> None:
            self._local.cwd = value

        def _resolve(self, path: str) -> str:
            base = self._cwd
            return path if base is None else os.path.join(base, path)

        def read(self, path):
            try:
                with open(self._resolve(path), encoding="utf-8") as f:
                    return f.read()
            except OSError:
                try:  # papermill accepts a notebook's JSON text in place of a path
                    json.loads(path)
                    return path
                except ValueError:
                    pass
                raise

        def listdir(self, path):
            return [os.path.join(path, fn) for fn in os.listdir(self._resolve(path))]

        def write(self, buf, path):
            target = self._resolve(path)
            dirname = os.path.dirname(target)
            if dirname and not os.path.exists(dirname):
                raise FileNotFoundError(f"output folder {dirname} doesn't exist.")
            with open(target, "w", encoding="utf-8") as f:
                f.write(buf)

    return ThreadLocalCwdHandler
