"""Every code block of the documentation runs as written.

The documents in :data:`DOCS` are split into fenced code blocks. Their ``python`` blocks run
in order in one namespace per document, their ``bash`` blocks in a shell, all in one
temporary folder in which ``spotkit demo`` has been run first (the quick start's block ends
with that command but also installs software, so it is not run itself). The setup the
snippets need (a scan of your own, a folder of CBF frames...) is in visible blocks of the
README, not here.

A ``bash`` block runs when each of its command lines is a ``spotkit`` command. A block that
cannot run here (it installs software, starts a server, needs a NERSC key or your own
folders) carries the marker ``<!-- docs-test: skip (reason) -->`` on the line above its
fence; any other ``python`` or ``bash`` block that is not runnable fails this test. Blocks in
other languages (``text``, ``yaml``) are not code.
"""

from __future__ import annotations

import linecache
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The documents whose code blocks run, in order (they share the demo folder).
DOCS = ("README.md", "catalogs/README.md", "docs/DESIGN.md")

#: The marker, on the line just above a fence, for a block that cannot run in a test.
SKIP_MARKER = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")

RUNNABLE = {"python", "bash"}

_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int          # 1-based line of the opening fence
    lang: str
    source: str
    skip: str | None   # the marker's reason

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}-{self.lang}"


def extract_blocks(doc: str) -> list[Block]:
    """The fenced code blocks of ``doc`` (a path relative to the repository root)."""
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        if j == len(lines):
            raise AssertionError(f"{doc}:{start + 1}: code fence never closed")
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = SKIP_MARKER.search(prev)
        blocks.append(Block(doc, start + 1, m["lang"] or "", "\n".join(lines[start + 1:j]),
                            marker["reason"].strip() if marker else None))
        i = j + 1
    return blocks


BLOCKS = [b for doc in DOCS if (ROOT / doc).exists() for b in extract_blocks(doc)]
RUN = [b for b in BLOCKS if b.lang in RUNNABLE]


def _commands(block: Block) -> list[str]:
    """The command lines of a bash block (comments and blank lines dropped)."""
    return [ln.strip() for ln in block.source.splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


@pytest.fixture(scope="module")
def docs_env(demo_run):
    """The folder where `spotkit demo` ran (tests/conftest.py), its private spotkit home, and
    one namespace per doc."""
    return {"work": demo_run["work"], "home": demo_run["home"], "env": demo_run["env"],
            "namespaces": {}, "failed": []}


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("block", RUN, ids=lambda b: b.id)
def test_doc_block_runs(block, docs_env, monkeypatch):
    if block.skip:
        pytest.skip(f"marked in {block.doc}: {block.skip}")
    if docs_env["failed"]:
        pytest.skip(f"an earlier block failed first: {docs_env['failed'][0]}")
    monkeypatch.chdir(docs_env["work"])
    monkeypatch.setenv("SPOTKIT_HOME", str(docs_env["home"]))
    monkeypatch.delenv("SPOTKIT_CATALOG", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    docs_env["failed"].append(block.id)  # removed again when the block passes
    if block.lang == "python":
        ns = docs_env["namespaces"].setdefault(block.doc, {"__name__": "__docs__"})
        name = f"{block.doc}:{block.line}"
        # tracebacks show the README's lines (offset: line 1 is the block's first line)
        linecache.cache[name] = (len(block.source), None, block.source.splitlines(True), name)
        exec(compile(block.source, name, "exec"), ns)
    else:
        for cmd in _commands(block):
            res = subprocess.run(["bash", "-c", cmd], env=docs_env["env"], capture_output=True,
                                 text=True, timeout=600, cwd=docs_env["work"])
            assert res.returncode == 0, (
                f"{block.id}: `{cmd}` exited {res.returncode}\n"
                f"stdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-3000:]}")
    docs_env["failed"].remove(block.id)


@pytest.mark.parametrize("block", RUN, ids=lambda b: b.id)
def test_doc_block_is_runnable_or_marked(block):
    """A code block either runs here or says why it cannot (so the docs cannot drift)."""
    if block.skip is not None:
        assert block.skip, f"{block.id}: the skip marker needs a reason"
        return
    if block.lang == "python":
        compile(block.source, block.id, "exec")
        return
    not_spotkit = [c for c in _commands(block) if shlex.split(c)[0] != "spotkit"]
    assert not not_spotkit, (
        f"{block.id}: bash blocks run only `spotkit ...` commands; {not_spotkit} would not "
        "run. Mark the block with <!-- docs-test: skip (reason) --> on the line above it, "
        "or make its setup a visible python block before it.")


def test_docs_have_runnable_blocks():
    readme = [b for b in RUN if b.doc == "README.md" and not b.skip]
    assert len(readme) >= 5, "README.md lost its runnable blocks"
    assert any("spotkit demo" in b.source for b in BLOCKS if b.doc == "README.md"), (
        "README's quick start no longer runs `spotkit demo`")


def test_quick_start_test_command_is_what_ci_runs():
    """.ci/run runs exactly the README's test command (the second quick-start block)."""
    quick = [b for b in BLOCKS if b.doc == "README.md" and "python -m pytest" in b.source]
    assert len(quick) == 1, "README.md should show the test command once"
    ci = (ROOT / ".ci" / "run").read_text()
    assert quick[0].source.strip() in ci, (
        "README's test command and .ci/run differ:\n" + quick[0].source)


def test_no_dangling_design_reference():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to missing {target}"


def test_subpackages_load_on_first_use():
    """README writes `spotkit.widgets.JobMonitor(...)` after a bare `import spotkit`."""
    code = ("import sys, spotkit\n"
            "assert 'spotkit.widgets' not in sys.modules and 'spotkit.tomo' not in sys.modules\n"
            "assert spotkit.widgets.JobMonitor and spotkit.tomo.reconstruct\n"
            "assert 'widgets' in dir(spotkit)\n"
            "try:\n    spotkit.nonexistent\nexcept AttributeError as e:\n    print(e)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "has no attribute 'nonexistent'" in res.stdout


def _layout_names() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Layout\n"):text.index("## Development\n")]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name.rstrip("/") for row in rows for name in re.findall(r"`([^`]+)`", row)}


def test_readme_layout_matches_the_tree():
    """README's layout tables name every tracked top-level path and every spotkit package."""
    names = _layout_names()
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    # top-level entries; a dot-folder is named with its file (`.ci/run`)
    top = {path if path.startswith(".ci/") else path.split("/")[0]
           for path in tracked.stdout.split()}
    top -= {".gitignore", "README.md"}
    packages = {f"spotkit.{p.name}" for p in (ROOT / "spotkit").iterdir()
                if (p / "__init__.py").is_file()}
    packages |= {f"spotkit.{p.stem}" for p in (ROOT / "spotkit").glob("*.py")
                 if not p.stem.startswith("_")}
    missing = sorted((top | packages) - names)
    stale = sorted(n for n in names - top - packages
                   if n.startswith("spotkit.") and n.count(".") == 1
                   and not (ROOT / "spotkit" / n.split(".")[1]).exists()
                   and not (ROOT / "spotkit" / f"{n.split('.')[1]}.py").exists())
    assert not missing, f"README's layout tables do not mention {missing}"
    assert not stale, f"README's layout tables name packages that no longer exist: {stale}"
