"""``spotkit ingest`` and ``spotkit catalog search|show|export``; the catalog every
command opens (only creating commands make one)."""

from __future__ import annotations

import json
from pathlib import Path

from spotkit.cli._diagnostics import _error
from spotkit.cli._output import _out, _spans, _table
from spotkit.errors import SpotkitError


def _catalog(args, *, create: bool = False):
    """The catalog of ``--catalog`` (or the default); only creating commands make one."""
    from spotkit.catalog import open_catalog

    return open_catalog(args.catalog, create=create)


def _catalog_file(args) -> Path | None:
    """The catalog's database file, or None for a database server's URL."""
    from spotkit.config import catalog_location, is_catalog_url

    location = args.catalog if args.catalog is not None else catalog_location()
    if is_catalog_url(str(location)):
        return None
    return Path(location).expanduser()



def cmd_ingest(args) -> int:
    db = _catalog_file(args)
    # what opening will create (nothing on a database server)
    missing = [p for p in (db, *db.parents) if not p.exists()] if db is not None else []
    cat = _catalog(args, create=True)
    status, ingested = 0, 0
    try:
        for path in args.paths:
            try:
                ds = cat.ingest(path)
            except (SpotkitError, ValueError, OSError) as exc:
                _error(exc, verbose=args.verbose)
                status = 1
                continue
            ingested += 1
            _out(f"{ds.id}  {ds.kind}  {ds.sample}  {ds.path}")
    finally:
        empty = not ingested and len(cat) == 0  # (another process may have used it meanwhile)
        cat.close()
        if missing and empty:
            _remove_new_catalog(missing)
    return status


def _remove_new_catalog(created: list[Path]) -> None:
    """Remove a catalog this command created but put nothing in (and the folders it made)."""
    db = created[0]
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    for folder in created[1:]:
        try:
            folder.rmdir()
        except OSError:
            break


def cmd_search(args) -> int:
    cat = _catalog(args)
    with cat:
        res = cat.search(beamline=args.beamline, sample=args.sample, proposal=args.proposal,
                         kind=args.kind, status=args.status, since=args.since,
                         until=args.until, text=args.text, limit=args.limit,
                         exact_total=getattr(args, "exact_total", False))
    if args.json:
        _out(json.dumps(res.to_records(), indent=1, default=str))
        return 0
    rows = [{"id": d.id, "kind": d.kind, "beamline": d.beamline, "sample": d.sample,
             "proposal": d.proposal, "start": d.start_time.strftime("%Y-%m-%d %H:%M"),
             "status": d.status} for d in res]
    _out(_table(rows, ["id", "kind", "beamline", "sample", "proposal", "start", "status"]))
    _out(f"{len(res)} shown of {res.total_text} matching")  # "about ..." when estimated
    return 0


def cmd_show(args) -> int:
    with _catalog(args) as cat:
        return _show(cat, args)


def _show(cat, args) -> int:
    ds = cat[args.dataset_id]
    from spotkit.monitor import quality_verdict

    verdict = quality_verdict(cat, ds)
    if args.json:
        record = ds.provenance.to_dict()
        if verdict is not None:
            record["quality"] = verdict.to_dict()
        _out(json.dumps(record, indent=1, default=str))
        return 0
    _out(repr(ds))
    _out("\nFiles")
    _out(_table([{"role": f.role, "size": f.size, "sha256": f.sha256[:16], "path": f.path}
                 for f in ds.files], ["role", "size", "sha256", "path"]))
    _out("\nProvenance")
    _out(repr(ds.provenance))
    runs = ds.runs
    if runs:
        _out("\nRuns on this dataset")
        _out(_table([{"run": r.id, "notebook": Path(r.notebook).name, "state": r.state,
                      "error": (f"cell {r.error_cell}: {r.error_name}: {r.error_message}"
                                if r.state == "failed" else ""),
                      "outputs": ", ".join(r.outputs)} for r in runs],
                    ["run", "notebook", "state", "error", "outputs"]))
        flow = [r for r in runs if (r.context or {}).get("flow")]
        for r in flow:
            f = r.context["flow"]
            _out(f"{r.id}: started by the flow, rule {f.get('rule')!r} action "
                 f"{f.get('action')!r} (stage {f.get('stage')}, rules version "
                 f"{f.get('rules_version')})")
    marks = cat.frame_marks(ds)
    if marks:
        _out("\nFrame marks (advice for transfer and storage; nothing is deleted)")
        _out(_frame_ranges(marks))
    if verdict is not None:
        _out("\nQuality check (keep-up, against references)")
        _out(_quality_text(verdict))
    return 0


def _quality_text(verdict) -> str:
    """The verdict, its references and one line per test (``FAIL`` first)."""
    import datetime as dt

    when = dt.datetime.fromtimestamp(verdict.checked_at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    refs = verdict.reference_ids
    lines = [f"verdict: {verdict.verdict.upper()} (checked {when}; {len(refs)} references"
             + (f": {refs[0]} .. {refs[-1]})" if refs else ")")]
    if not verdict.tests:
        lines += [f"  {reason}" for reason in verdict.reasons]
    tests = sorted(verdict.tests, key=lambda t: t.passed)
    lines += [f"  {'ok  ' if t.passed else 'FAIL'} {t.message}" for t in tests]
    return "\n".join(lines)


def _frame_ranges(marks: list[dict]) -> str:
    """``of interest: 0, 20, 35-45 (11 frames)`` lines, one per label."""
    lines = []
    for label in ("of interest", "redundant"):
        frames = [m["frame"] for m in marks if m["label"] == label]
        if not frames:
            continue
        runs = sorted({m["run_id"] for m in marks if m["label"] == label and m["run_id"]})
        lines.append(f"{label}: {_spans(frames)} ({len(frames)} frames"
                     + (f"; run {', '.join(runs)}" if runs else "") + ")")
    return "\n".join(lines)


def cmd_export(args) -> int:
    with _catalog(args) as cat:
        path = cat.export_intake(args.path)
    _out(str(path))
    return 0
