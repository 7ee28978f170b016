"""spotkit's processes defer jsonschema's IRI grammar (spotkit._startup): nbformat and
papermill import without compiling it, and IRI checks give the real module's answers."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("rfc3987_syntax")

SCRIPT = """
import sys
from spotkit._startup import defer_iri_grammar
print(defer_iri_grammar())
import papermill, nbformat
from jsonschema import FormatChecker
module = sys.modules["rfc3987_syntax"]
print(getattr(module, "__file__", None) is None)  # still the stand-in after the imports
checker = FormatChecker()
answers = [checker.conforms(v, f) for v in ("http://example.org/a b", "http://example.org/\\u00e4",
                                            "../x?y#z") for f in ("iri", "iri-reference")]
print(answers)
from rfc3987_syntax.syntax_helpers import is_valid_syntax  # a submodule imports as before
import rfc3987_syntax
print(rfc3987_syntax.__file__ is not None, sys.modules["rfc3987_syntax"] is rfc3987_syntax,
      is_valid_syntax("iri", "http://example.org/"))
"""


def test_papermill_imports_without_the_grammar_and_iri_checks_still_answer():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split("\n")
    assert out[0] == "True"
    assert out[1] == "True", "nbformat/papermill imported the real rfc3987_syntax"
    # the same answers as the real module: a space is no IRI, a non-ASCII letter is, and
    # a relative reference is an IRI reference but no IRI
    assert out[2] == str([False, False, True, True, False, True])
    assert out[3] == "True True True"  # a plain import afterwards gets the real module


def test_worker_and_cli_entry_points_defer_it():
    for entry in ("from spotkit.cli import main; main(['--version'])",
                  "from spotkit.compute._worker import main; main([])"):
        code = (f"import sys; {entry}; m = sys.modules.get('rfc3987_syntax');"
                "print('STAND-IN' if m.__doc__.startswith(\"spotkit's stand-in\") else m)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120, check=True).stdout.split()
        assert out[-1] == "STAND-IN", (entry, out)
