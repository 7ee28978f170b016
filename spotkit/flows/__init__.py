"""Autonomous data flow: watch the beamline, move data safely, run the per-dataset pipelines.

``spotkit watch`` in a library: :class:`Watcher` polls inbox folders for finished scans
(:class:`InboxScanner`), ingests each into the catalog, packs it with a manifest
(:func:`make_manifest`), moves it to the warehouse with a :class:`Mover` (:class:`LocalCopy`,
:class:`Rsync`, :class:`Relay`) and verifies it there, then runs the notebooks that the
facility's rules (:func:`load_rules`) ask for, preview stage first. Every step is recorded
in a :class:`Journal` in the catalog database, so that a watcher killed at any point and
started again finishes every dataset exactly once.

While a series is still being written, ``spotkit live`` hands each recorded frame to
:class:`LiveTriggers`: the rules' ``live:`` triggers decide on a change (or on a quiet
stretch) to run a notebook on the frames around it, send those frames first
(:meth:`Journal.prioritize`), notify, call the beamline's hook or fit a model, each decision
recorded with its reason. Frames marked redundant leave the beamline's storage only after
the validation the facility configures (:class:`FrameRetention`).

Examples
--------
A watcher over a simulated inbox. Its rules ask for a notebook for SAXS data only, so the
tomography scan is ingested, packed, moved and verified, and no notebook runs
(``catalogs/rules.example.yaml`` has rules for both kinds):

>>> import pathlib, tempfile
>>> from spotkit.flows import Watcher, load_rules
>>> from spotkit.sim import simulate_tomo_scan
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "warehouse").mkdir()
>>> _ = simulate_tomo_scan(root / "inbox" / "scan.h5", shape=(32, 2, 32), seed=1)
>>> RULES = '''
... targets: {local: {kind: local, max_workers: 1}}
... rules:
...   - {name: saxs, match: {kind: saxs/raw},
...      actions: [{name: quick, notebook: saxs_quicklook, target: local}]}
... '''
>>> watcher = Watcher(root / "inbox", catalog=root / "catalog.db",
...                   rules=load_rules(RULES), warehouse=root / "warehouse",
...                   settle=0)
>>> watcher.run_forever(max_passes=1)  # a service runs until watcher.stop()
>>> [(item.path.name, item.state) for item in watcher.journal.items()]
[('scan.h5', 'done')]
>>> watcher.close()
"""

from spotkit.errors import RulesError, TransferError
from spotkit.flows._control import (
    ActionStatus,
    FlowStatus,
    RecentError,
    RulePause,
    flow_status,
    pause_rule,
    paused_rules,
    resume_rule,
)
from spotkit.flows._flow import FAULT_ENV, FAULT_POINTS, PassReport, Watcher
from spotkit.flows._journal import (
    FINAL_STATES,
    STATES,
    STEPS,
    Item,
    Journal,
    StepRecord,
    make_owner,
)
from spotkit.flows._movers import (
    FramePlan,
    FrameRetention,
    LocalCopy,
    Mover,
    Relay,
    RetentionPolicy,
    Rsync,
    TransferResult,
    make_mover,
    mover_kinds,
    register_mover,
)
from spotkit.flows._rules import (
    DEFAULT_STAGES,
    Action,
    RetryPolicy,
    Rule,
    RuleProblem,
    Rules,
    load_rules,
)
from spotkit.flows._rules_live_objects import LiveAction, LiveTrigger
from spotkit.flows._suitcase import (
    FileEntry,
    Manifest,
    Problem,
    make_manifest,
    sha256_file,
    verify_manifest,
)
from spotkit.flows._triggers import Decision, LiveTriggers
from spotkit.flows._watch import (
    EXPECTED_DATASETS,
    SENTINEL_SUFFIX,
    Candidate,
    InboxScanner,
    check_complete,
    start_monitor,
)

__all__ = [
    "DEFAULT_STAGES",
    "EXPECTED_DATASETS",
    "FAULT_ENV",
    "FAULT_POINTS",
    "FINAL_STATES",
    "SENTINEL_SUFFIX",
    "STATES",
    "STEPS",
    "Action",
    "ActionStatus",
    "Candidate",
    "Decision",
    "FileEntry",
    "FlowStatus",
    "FramePlan",
    "FrameRetention",
    "InboxScanner",
    "Item",
    "Journal",
    "LiveAction",
    "LiveTrigger",
    "LiveTriggers",
    "LocalCopy",
    "Manifest",
    "Mover",
    "PassReport",
    "Problem",
    "RecentError",
    "Relay",
    "RetentionPolicy",
    "RetryPolicy",
    "Rsync",
    "Rule",
    "RulePause",
    "RuleProblem",
    "Rules",
    "RulesError",
    "StepRecord",
    "TransferError",
    "TransferResult",
    "Watcher",
    "check_complete",
    "flow_status",
    "load_rules",
    "make_manifest",
    "make_mover",
    "make_owner",
    "mover_kinds",
    "pause_rule",
    "paused_rules",
    "register_mover",
    "resume_rule",
    "sha256_file",
    "start_monitor",
    "verify_manifest",
]
