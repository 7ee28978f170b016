"""Fixtures for the flow tests: tiny pipeline notebooks, rules files, an inbox and a warehouse."""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

PARAMS = textwrap.dedent("""\
    dataset_id = None
    catalog_path = None
    output_dir = "."
    tag = "out"
    """)

#: writes a small file and declares it; it raises for a dataset whose sample is listed in
#: the file $SPOTKIT_TEST_FAIL_FILE;
#: SPOTKIT_FAULT_AT=run.notebook:n makes it SIGKILL the watcher that runs it
BODY = textwrap.dedent("""\
    import os, pathlib, signal
    from spotkit.runs import declare_output
    if os.environ.get("SPOTKIT_FAULT_AT", "").startswith("run.notebook:"):
        os.kill(os.getppid(), signal.SIGKILL)  # the watcher, in the middle of this run
    fail = os.environ.get("SPOTKIT_TEST_FAIL_FILE")
    if fail and pathlib.Path(fail).exists():
        from spotkit.catalog import open_catalog
        if open_catalog(catalog_path)[dataset_id].sample in pathlib.Path(fail).read_text().split():
            raise RuntimeError("the test asked this notebook to fail")
    out = pathlib.Path(output_dir) / f"{tag}.txt"
    out.write_text(f"{dataset_id} {tag}\\n")
    declare_output(out, kind="test/marker", metadata={"tag": tag})
    """)


def write_notebook(path: Path, body: str = BODY) -> Path:
    """A tiny pipeline notebook: a parameters cell and one cell that declares an output."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = new_code_cell(PARAMS)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, new_code_cell(body)]
    nbformat.write(nb, path)
    return path


def write_rules(path: Path, notebook: Path, *, attempts: int = 2, backoff: float = 0.1,
                actions: tuple[tuple[str, str], ...] = (("preview", "preview"),
                                                        ("full", "full"))) -> Path:
    """A rules file with one rule for 8.3.2 tomo scans running ``notebook`` per action."""
    lines = [
        "version: 1",
        "facility: TEST",
        "stages: [preview, full]",
        f"retry: {{attempts: {attempts}, backoff: {backoff}, factor: 2, max_backoff: 1}}",
        "targets:",
        "  local: {kind: local, max_workers: 1, concurrency: 1}",
        "rules:",
        "  - name: tomo",
        "    match: {beamline: '8.3.2', kind: tomo/raw}",
        "    actions:",
    ]
    previous = None
    for name, stage in actions:
        after = f", after: {previous}" if previous else ""
        lines.append(f"      - {{name: {name}, stage: {stage}, notebook: {notebook}, "
                     f"target: local, parameters: {{tag: {name}}}{after}}}")
        previous = name
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_scan(path: Path, seed: int = 0, **kwargs):
    """A very small tomo scan written like a detector writes it."""
    from spotkit.sim import simulate_tomo_scan

    kwargs.setdefault("shape", (32, 2, 32))
    kwargs.setdefault("n_flats", 2)
    kwargs.setdefault("n_darks", 2)
    return simulate_tomo_scan(path, seed=seed, **kwargs)


@pytest.fixture
def flow_env(tmp_path, monkeypatch):
    """An inbox, a warehouse, a catalog path, a tiny notebook and a rules file."""
    inbox = tmp_path / "inbox"
    warehouse = tmp_path / "warehouse"
    inbox.mkdir()
    warehouse.mkdir()
    notebook = write_notebook(tmp_path / "tiny.ipynb")
    rules = write_rules(tmp_path / "rules.yaml", notebook)
    fail_file = tmp_path / "FAIL"
    monkeypatch.setenv("SPOTKIT_TEST_FAIL_FILE", str(fail_file))
    return {"root": tmp_path, "scan": tiny_scan, "write_rules": write_rules,
            "write_notebook": write_notebook, "inbox": inbox, "warehouse": warehouse,
            "notebook": notebook, "rules": rules, "catalog": tmp_path / "catalog.db",
            "fail_file": fail_file}
