"""A mover that copies with the ``rsync`` program, locally or over ssh."""

from __future__ import annotations

import logging
import posixpath
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from spotkit.errors import TransferError

from ._mover_base import Mover, TransferResult, _ahead, _ordered, _probe_dir
from ._suitcase import (
    Manifest,
    Problem,
    default_workers,
    verify_manifest,
)

__all__ = ["Rsync"]

log = logging.getLogger("spotkit.flows._movers")


_RSYNC_TRANSIENT = {5, 10, 11, 12, 14, 23, 24, 30, 35, 255}


def _rsync_key(path: str) -> tuple[tuple[bytes, ...], bytes]:
    """Where rsync puts a file in a run: by folder, then by name (bytes) within a folder."""
    folder, _, name = path.rpartition("/")
    return tuple(p.encode() for p in folder.split("/") if p), name.encode()


def _name_ordered_runs(entries) -> list[list]:
    """Cut files in transfer order into the fewest runs that are each in rsync's own
    (name) order, so that one rsync per run keeps the order."""
    runs: list[list] = []
    last = None
    for entry in entries:
        key = _rsync_key(entry.path)
        if not runs or last is None or key <= last:
            runs.append([])
        runs[-1].append(entry)
        last = key
    return runs


class Rsync(Mover):
    """Copy with the ``rsync`` program, locally or over ssh, then verify the checksums.

    rsync writes each file under a temporary name and renames it when complete; with
    ``--partial-dir`` an interrupted file is kept in a hidden folder (never under its final
    name) and resumed by the next run. After rsync, every file is re-read at the destination
    and checked against the manifest (over ssh with ``sha256sum``); a file that does not
    match is removed and reported.

    Parameters
    ----------
    dest : str or path-like
        The destination folder: on this machine, or on ``ssh`` when ``mode="push"``.
    ssh : str, optional
        ``"user@host"`` of the remote end. With ``mode="push"`` the destination is there;
        with ``mode="pull"`` the *source* is there and ``dest`` is local (run it on the
        warehouse side, as SPADE's pull mode does).
    mode : {"push", "pull"}
        See ``ssh``. Without ``ssh`` both mean a local copy.
    options : sequence of str
        Extra rsync options (e.g. ``("--bwlimit=200M",)``).
    ssh_options : sequence of str
        Options for ssh (default ``("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")``).
    timeout : float, optional
        Seconds rsync may go without progress before it is stopped (``--timeout``).

    Examples
    --------
    A local copy (needs the ``rsync`` program):

    >>> import pathlib, tempfile
    >>> from spotkit.flows import make_manifest
    >>> inbox, warehouse = (pathlib.Path(tempfile.mkdtemp()) for _ in range(2))
    >>> _ = (inbox / "scan.h5").write_bytes(b"raw detector bytes" * 100)
    >>> manifest = make_manifest(["scan.h5"], root=inbox, read_file_metadata=False)
    >>> mover = Rsync(warehouse)
    >>> mover.available()
    (True, 'ok...')
    >>> mover.transfer(manifest, inbox).copied
    ('scan.h5',)
    >>> mover.transfer(manifest, inbox).skipped  # verified there already: not sent again
    ('scan.h5',)

    Pushing to a data transfer node over ssh (not run here: it needs an ssh login with a
    key to that host):

    >>> remote = Rsync("/global/cfs/warehouse", ssh="spot@dtn01.nersc.gov")
    >>> remote.transfer(manifest, inbox)  # doctest: +SKIP
    """

    name = "rsync"
    can_order = True

    def __init__(self, dest, *, ssh: str | None = None, mode: str = "push",
                 options=(), ssh_options=("-o", "BatchMode=yes", "-o", "ConnectTimeout=10"),
                 timeout: float | None = 600):
        if mode not in ("push", "pull"):
            raise ValueError(f"unknown rsync mode {mode!r}; choose one of ['pull', 'push'] "
                             "(for relay, compose two movers with Relay)")
        if isinstance(options, str):
            raise TypeError("options must be a sequence of separate arguments, not one string")
        self.dest = str(dest)
        self.ssh = ssh
        self.mode = mode
        self.options = tuple(options)
        self.ssh_options = tuple(ssh_options)
        self.timeout = timeout

    def __repr__(self) -> str:
        at = f", ssh={self.ssh!r}, mode={self.mode!r}" if self.ssh else ""
        return f"Rsync({self.dest!r}{at})"

    @property
    def _remote_dest(self) -> bool:
        return bool(self.ssh) and self.mode == "push"

    def _ssh_argv(self, *remote: str) -> list[str]:
        return ["ssh", *self.ssh_options, self.ssh, "--", " ".join(map(shlex.quote, remote))]

    def available(self) -> tuple[bool, str]:
        """rsync installed; destination folder there and writable (over ssh when remote)."""
        if shutil.which("rsync") is None:
            return False, "the rsync program is not installed (e.g. apt-get install rsync)"
        if not self._remote_dest:
            return _probe_dir(Path(self.dest))
        res = self._run(self._ssh_argv("test", "-d", str(self.dest), "-a", "-w", str(self.dest)),
                        timeout=60)
        if res.returncode == 0:
            return True, "ok"
        detail = (res.stderr or "").strip().splitlines()[-1:] or [f"exit {res.returncode}"]
        return False, (f"{self.ssh}:{self.dest} is not a writable folder or not reachable "
                       f"({detail[0]})")

    @staticmethod
    def _run(argv, *, input=None, timeout=None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(argv, input=input, capture_output=True, timeout=timeout,
                                  text=True, check=False)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(argv, 124, exc.stdout or "",
                                               f"timed out after {timeout} s")
        except FileNotFoundError as exc:
            return subprocess.CompletedProcess(argv, 127, "", str(exc))

    def transfer(self, manifest: Manifest, src_root, *, dest=None,
                 order: Sequence[str] | None = None) -> TransferResult:
        """Run rsync for the manifest's files, then verify each at the destination.

        Parameters
        ----------
        manifest : Manifest
        src_root : str or path-like
            The dataset root (on ``ssh`` when ``mode="pull"``).
        dest : str or path-like, optional
            Destination folder (default: ``dest``).
        order : sequence of str, optional
            Relative paths (as the manifest lists them) to copy first, in this order (the
            frames of interest of a frame folder: :func:`frame_transfer_order
            <spotkit.flows._movers.frame_transfer_order>`); the manifest's other files
            follow in its order. rsync sorts the files of one run by name, so the ordered
            list is cut into the fewest runs that each go in name order (frames of interest
            in one run, the rest in the next), each run one rsync (``--files-from``) whose
            files are verified before the next run starts. Within one folder the order is
            exact. For a single HDF5 file (frames inside it) the order does not apply.

        Returns
        -------
        TransferResult
            ``copied`` in the order the files went.

        Raises
        ------
        TransferError
            rsync failed (``transient`` for full, read-only, network and timeout failures),
            or a file does not verify at the destination (the bad copy is removed).
        """
        dest = self.dest if dest is None else str(dest)
        t0 = time.perf_counter()
        src_spec = str(src_root).rstrip("/") + "/"
        dst_spec = dest.rstrip("/") + "/"
        argv = ["rsync", "--recursive", "--times", "--partial-dir=.rsync-partial",
                "--files-from=-", "--from0", "--out-format=%n", "--protect-args"]
        if self.timeout:
            argv.append(f"--timeout={int(self.timeout)}")
        if self.ssh:
            argv += ["-e", shlex.join(["ssh", *self.ssh_options])]
            if self.mode == "push":
                dst_spec = f"{self.ssh}:{dst_spec}"
            else:
                src_spec = f"{self.ssh}:{src_spec}"
        elif not Path(dest).is_dir():
            raise TransferError(f"cannot transfer {manifest.dataset} ({manifest.id}): "
                                f"destination {dest} is not a folder (not mounted?). The flow "
                                "retries when it is back.", dest=dest, reason="unavailable",
                                transient=True)
        argv += [*self.options, src_spec, dst_spec]
        entries = _ordered(manifest, order)
        runs = _name_ordered_runs(entries) if order else [list(manifest.files)]
        copied: list[str] = []
        for run in runs:
            names = {f.path for f in run}
            file_list = "\0".join(f.path for f in run) + "\0"
            log.debug("running %s (%d files)", shlex.join(argv), len(run))
            res = self._run(argv, input=file_list, timeout=None)
            if res.returncode != 0:
                raise self._rsync_error(res, manifest, dest)
            sent = [line.strip() for line in res.stdout.splitlines() if line.strip() in names]
            part = manifest if len(runs) == 1 else replace(manifest, files=tuple(run))
            problems = self.verify(part, dest, level="crc32")
            if problems:
                self._remove_bad(problems, dest)
                names_bad = ", ".join(str(p) for p in problems)
                raise TransferError(
                    f"checksum mismatch at destination {dest} after rsync: {names_bad}. The bad "
                    "copies were removed; the flow retries.", path=problems[0].path, dest=dest,
                    reason="checksum mismatch", transient=True)
            copied += dict.fromkeys(sent)
        done = set(copied)
        if not order:  # as before: the manifest's order
            copied = [f.path for f in manifest.files if f.path in done]
        result = TransferResult(manifest.id, self.name, dest if not self._remote_dest
                                else f"{self.ssh}:{dest}", tuple(copied),
                                tuple(f.path for f in entries if f.path not in done),
                                sum(f.size for f in manifest.files if f.path in done),
                                time.perf_counter() - t0, _ahead(manifest, entries))
        log.info("rsync %s to %s: %d copied, %d already there%s", manifest.id, result.dest,
                 len(result.copied), len(result.skipped),
                 f", {result.ahead} file(s) first (priority order, {len(runs)} runs)"
                 if result.ahead else "")
        return result

    def _rsync_error(self, res, manifest: Manifest, dest: str) -> TransferError:
        err = (res.stderr or "").strip()
        low = err.lower()
        if "no space left" in low or "disk quota" in low:
            reason = "disk full"
        elif "read-only file system" in low or "permission denied" in low:
            reason = "read-only or not writable"
        elif res.returncode in (255, 12, 10, 5) or "connection" in low:
            reason = "unreachable"
        elif res.returncode in (124, 30, 35):
            reason = "timed out"
        else:
            reason = f"rsync exit {res.returncode}"
        transient = reason in ("disk full", "read-only or not writable", "unreachable",
                               "timed out") or res.returncode in _RSYNC_TRANSIENT
        last = err.splitlines()[-3:]
        where = f"{self.ssh}:{dest}" if self._remote_dest else dest
        return TransferError(
            f"rsync of {manifest.dataset} ({manifest.id}) to {where} failed ({reason}, exit "
            f"{res.returncode}): {' | '.join(last)}. Partial files stay in .rsync-partial and "
            f"are resumed; {'the flow retries' if transient else 'fix the command or options'}.",
            dest=where, reason=reason, transient=transient)

    def verify(self, manifest: Manifest, dest=None, *, level: str = "sha256") -> list[Problem]:
        """Re-read every file at the destination (over ssh with ``sha256sum`` when remote).

        A remote destination is always checked with sha256 (``level`` applies to local ones).
        """
        dest = self.dest if dest is None else str(dest)
        if not self._remote_dest:
            return verify_manifest(manifest, dest, level=level, workers=default_workers())
        paths = [f"{dest.rstrip('/')}/{f.path}" for f in manifest.files]
        res = self._run(self._ssh_argv("sha256sum", "--", *paths), timeout=None)
        found = {}
        for line in res.stdout.splitlines():
            digest, _, name = line.partition("  ")
            found[name] = digest
        problems = []
        for f, p in zip(manifest.files, paths, strict=True):
            if p not in found:
                problems.append(Problem(f.path, f"missing or unreadable on {self.ssh}:{dest}"))
            elif found[p] != f.sha256:
                problems.append(Problem(f.path, "sha256 differs from the manifest"))
        return problems

    def store_manifest(self, manifest: Manifest, dest=None) -> str:
        """Put a copy of the manifest beside the dataset (over ssh when remote)."""
        dest = self.dest if dest is None else str(dest)
        if not self._remote_dest:
            return super().store_manifest(manifest, dest)
        final = f"{dest.rstrip('/')}/{self.manifest_path(manifest)}"
        tmp = f"{final}.{uuid.uuid4().hex[:8]}.tmp"
        script = (f"mkdir -p {shlex.quote(posixpath.dirname(final))} && cat > "
                  f"{shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} {shlex.quote(final)}")
        res = self._run(self._ssh_argv("sh", "-c", script),
                        input=manifest.to_json(), timeout=60)
        if res.returncode != 0:
            raise TransferError(f"cannot write the manifest copy {final} on {self.ssh}: "
                                f"{res.stderr.strip()[-300:]}", dest=dest,
                                reason="manifest copy", transient=True)
        return final

    def _remove_bad(self, problems, dest: str) -> None:
        paths = [f"{dest.rstrip('/')}/{p.path}" for p in problems]
        if self._remote_dest:
            self._run(self._ssh_argv("rm", "-f", "--", *paths), timeout=60)
        else:
            for p in paths:
                Path(p).unlink(missing_ok=True)


# -- relay -------------------------------------------------------------------------------
