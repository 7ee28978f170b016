"""``spotkit flow frames``: which redundant frames of a series may leave, approve, release.

The rules file's ``retention: frames:`` section says what validation the facility asks for
(:class:`spotkit.flows.FrameRetention`); this command shows the plan (a dry run unless
``--apply``), records a person's approval, and releases only what the policy allows.
"""

from __future__ import annotations

import json
from pathlib import Path

from spotkit.cli._catalog_cmds import _catalog
from spotkit.cli._output import _out, _spans, _table, _terminal_width
from spotkit.errors import SpotkitError

__all__: list[str] = []


def add_frames_parser(fsub, common) -> None:
    """``spotkit flow frames DATASET --rules FILE [--approve --reason] [--apply]``."""
    text = ("the redundant frames of a series: which may move or age out under the rules' "
            "'retention: frames:' section and why the others stay (a dry run unless --apply)")
    a = fsub.add_parser("frames", parents=common, help=text, description=text)
    a.add_argument("dataset", metavar="DATASET", help="the series' dataset id")
    a.add_argument("--rules", required=True, type=Path,
                   help="the rules file whose 'retention: frames:' section applies")
    a.add_argument("--approve", action="store_true",
                   help="record your approval of releasing its redundant frames (needs "
                   "--reason; counts where the section's validated_by has 'approval')")
    a.add_argument("--reason", help="why (recorded with the approval)")
    a.add_argument("--by", help="who (default: your login name)")
    a.add_argument("--apply", action="store_true",
                   help="move or age out the frames the plan allows (otherwise a dry run)")
    a.add_argument("--json", action="store_true", help="print the plan as JSON")
    a.set_defaults(func=cmd_flow_frames)


def _who(by: str | None) -> str:
    import getpass

    return (by or "").strip() or getpass.getuser()


def cmd_flow_frames(args) -> int:
    """Show (and with --approve / --apply act on) a series' frame retention plan."""
    from spotkit.flows import FrameRetention, load_rules

    policy = FrameRetention.from_rules(load_rules(args.rules))
    if policy is None:
        raise SpotkitError(
            f"{args.rules} has no 'retention: frames:' section: without one no frame ever "
            "leaves; add e.g.\n  retention:\n    frames: {validated_by: [replica], "
            "min_age: 30d, action: move, dest: /cold/frames}")
    if args.approve and not (args.reason or "").strip():
        raise SpotkitError("--approve needs --reason: say why the redundant frames may go "
                           "(it is recorded with your name)")
    with _catalog(args) as cat:
        if args.approve:
            policy.approve(cat, args.dataset, by=_who(args.by), reason=args.reason)
            _out(f"approval recorded for {args.dataset} by {_who(args.by)}: "
                 f"{args.reason.strip()}")
        plan = policy.apply(cat, args.dataset, dry_run=not args.apply,
                            by=_who(args.by) if args.apply else None)
    if args.json:
        _out(json.dumps({
            "dataset_id": plan.dataset_id, "action": plan.action, "dry_run": plan.dry_run,
            "validated": plan.validated, "frames": list(plan.frames),
            "files": [str(p) for p in plan.files], "done": list(plan.done),
            "held": {str(k): v for k, v in sorted(plan.held.items())},
            "checks": {k: {"ok": ok, "found": text} for k, (ok, text) in plan.checks.items()},
        }, indent=2))
        return 0
    rows = [{"validation": k, "holds": "yes" if ok else "no", "found": text}
            for k, (ok, text) in plan.checks.items()]
    if rows:
        _out(_table(rows, ["validation", "holds", "found"], width=_terminal_width(),
                    texts=("found",)))
    verb = plan.action.replace("_", " ")
    if plan.done:
        _out(f"{len(plan.done)} frame(s) of {plan.dataset_id} released ({verb}): "
             f"{_spans(plan.done)}")
    elif plan.frames:
        _out(f"{len(plan.frames)} frame(s) of {plan.dataset_id} may {verb}: "
             f"{_spans(plan.frames)} (dry run: --apply releases them)")
    else:
        _out(f"no frame of {plan.dataset_id} may {verb} now")
    if plan.held:
        reasons: dict[str, list[int]] = {}
        for frame, why in sorted(plan.held.items()):
            reasons.setdefault(why, []).append(frame)
        for why, frames in reasons.items():
            _out(f"  {len(frames)} held ({_spans(frames)}): {why}")
    return 0

