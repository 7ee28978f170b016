"""The ``spotkit`` command line: a thin layer over the library's public functions."""

from spotkit.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
