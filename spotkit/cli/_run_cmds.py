"""``spotkit run`` (a notebook for one dataset through papermill) and ``spotkit kernel``."""

from __future__ import annotations

from spotkit.cli._catalog_cmds import _catalog
from spotkit.cli._output import _out
from spotkit.cli._types import _parse_value


def cmd_run(args) -> int:
    from spotkit.runs import run_notebook

    params = {name: _parse_value(value) for name, value in (args.parameter or [])}
    with _catalog(args) as cat:
        res = run_notebook(args.notebook, args.dataset_id, parameters=params,
                           output_dir=args.output_dir, catalog=cat,
                           cell_timeout=args.cell_timeout, log_output=args.log_output)
    _out(f"run {res.run_id} completed in {res.seconds:.1f} s")
    _out(f"executed notebook: {res.output_notebook}")
    for out in res.outputs:
        _out(f"output {out.id}  {out.kind}  {out.path}")
    return 0


def cmd_kernel(args) -> int:
    from spotkit.runs import ensure_kernel

    _out(ensure_kernel())
    return 0
