"""Autonomous data flow: watch the beamline, move data safely, run the per-dataset pipelines.

``spotkit watch`` in a library: :class:`Watcher` polls inbox folders for finished scans
(:class:`InboxScanner`), ingests each into the catalog, packs it with a manifest
(:func:`make_manifest`), moves it to the warehouse with a :class:`Mover` (:class:`LocalCopy`,
:class:`Rsync`, :class:`Relay`) and verifies it there, then runs the notebooks that the
facility's rules (:func:`load_rules`) ask for, preview stage first. Every step is recorded
in a :class:`Journal` in the catalog database, so that a watcher killed at any point and
started again finishes every dataset exactly once.

Examples
--------
>>> from spotkit.flows import Watcher, load_rules
>>> watcher = Watcher("/data/inbox", catalog="catalog.db",
...                   rules=load_rules("rules.yaml"), warehouse="/warehouse")  # doctest: +SKIP
>>> watcher.run_forever()                                                      # doctest: +SKIP
"""

from spotkit.errors import RulesError, TransferError
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
from spotkit.flows._suitcase import (
    FileEntry,
    Manifest,
    Problem,
    make_manifest,
    sha256_file,
    verify_manifest,
)
from spotkit.flows._watch import (
    EXPECTED_DATASETS,
    SENTINEL_SUFFIX,
    Candidate,
    InboxScanner,
    check_complete,
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
    "Candidate",
    "FileEntry",
    "InboxScanner",
    "Item",
    "Journal",
    "LocalCopy",
    "Manifest",
    "Mover",
    "PassReport",
    "Problem",
    "Relay",
    "RetentionPolicy",
    "RetryPolicy",
    "Rsync",
    "Rule",
    "RuleProblem",
    "Rules",
    "RulesError",
    "StepRecord",
    "TransferError",
    "TransferResult",
    "Watcher",
    "check_complete",
    "load_rules",
    "make_manifest",
    "make_mover",
    "make_owner",
    "mover_kinds",
    "register_mover",
    "sha256_file",
    "verify_manifest",
]
