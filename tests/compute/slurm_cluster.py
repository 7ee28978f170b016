"""A real single-node Slurm (Debian ``slurm-wlm`` + ``munge``) for the compute tests.

:func:`start_cluster` writes a private ``slurm.conf`` for 127.0.0.1 in a fresh directory,
generates a munge key, starts ``munged`` (as user ``munge``), ``slurmctld`` and ``slurmd``
on free ports, and waits until a ``--wrap true`` job completes.
:meth:`SlurmCluster.stop` cancels what is left and stops every daemon it started, by PID.

Nothing outside the cluster's directory is touched: no ``/etc/slurm``, no ``/run/munge``,
no default ports, so two test sessions on one machine each get their own cluster.

Run it by hand to poke at a cluster::

    python tests/compute/slurm_cluster.py      # prints SLURM_CONF=..., stops on Enter
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sacct", "scancel", "scontrol")
PARTITION = "debug"


def missing_binaries() -> list[str]:
    """The Slurm/munge programs that are not installed (empty when all are)."""
    return [b for b in BINARIES if shutil.which(b) is None
            and not Path("/usr/sbin", b).exists()]


def skip_reason() -> str | None:
    """Why a real Slurm cannot be started here, or None when it can."""
    missing = missing_binaries()
    if missing:
        return (f"Slurm/munge not installed (missing {', '.join(missing)}); "
                "apt-get install slurm-wlm munge (.ci/run does)")
    if os.geteuid() != 0:
        return "the test Slurm runs its daemons as root (slurmd) and munge; not root here"
    return None


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hardware() -> dict[str, int]:
    """``slurmd -C``'s view of this machine (CPUs, sockets, cores, threads, memory)."""
    out = subprocess.run([_exe("slurmd"), "-C"], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    hw: dict[str, int] = {}
    for word in out.split():
        key, _, value = word.partition("=")
        if value.isdigit():
            hw[key] = int(value)
    return hw


@dataclass
class SlurmCluster:
    """A running test cluster.

    Attributes
    ----------
    root : pathlib.Path
        Its directory: ``slurm.conf``, state, spool, logs, munge key and socket.
    conf : pathlib.Path
        The ``slurm.conf`` (export it as ``SLURM_CONF``).
    node : str
        The node's name.
    partition : str
        The (only, default) partition.
    cpus, memory_mb : int
        What the node offers.
    jobcomp : pathlib.Path
        The ``jobcomp/filetxt`` file ``sacct -c`` reads.
    """

    root: Path
    conf: Path
    node: str
    partition: str
    cpus: int
    memory_mb: int
    jobcomp: Path
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """Environment for Slurm client commands that talk to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def command(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a Slurm client command against this cluster (no check)."""
        return subprocess.run(list(argv), capture_output=True, text=True, env=self.env,
                              timeout=timeout, check=False)

    def log(self, name: str = "slurmctld") -> str:
        """Text of a daemon's log file (``slurmctld``, ``slurmd``, ``munged``)."""
        path = {"slurmctld": self.root / "log" / "slurmctld.log",
                "slurmd": self.root / "log" / "slurmd.log",
                "munged": self.root / "munge" / "munged.log"}[name]
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self) -> bool:
        """All daemons still run."""
        return all(p.poll() is None for p in self._procs.values())

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until a trivial batch job (``--wrap true``) runs to completion.

        The probe is ``sbatch --wait --wrap true``'s, with faster polling: ``sbatch --wait``
        backs off to 8 s between its checks, which made start-up take 11 s instead of 3.
        """
        deadline = time.monotonic() + timeout
        last = ""
        job = None
        while time.monotonic() < deadline:
            if not self.alive():
                dead = [n for n, p in self._procs.items() if p.poll() is not None]
                raise RuntimeError(f"Slurm daemon(s) {dead} exited during start-up:\n"
                                   f"{self.log('slurmctld')[-3000:]}\n{self.log('slurmd')[-3000:]}")
            if job is None:
                res = self.command("sbatch", "--parsable", "--wrap", "true", "--output",
                                   "/dev/null", "--time", "1")
                if res.returncode == 0:
                    job = res.stdout.strip().split(";")[0]
                else:
                    last = (res.stderr or res.stdout).strip()
            else:
                res = self.command("squeue", "--noheader", "--states=all", f"--jobs={job}",
                                   "--format=%T")
                state = res.stdout.strip()
                if state == "COMPLETED":
                    return
                if state in ("FAILED", "NODE_FAIL", "BOOT_FAIL", "CANCELLED", "TIMEOUT"):
                    raise RuntimeError(f"the test Slurm's first job ended {state}:\n"
                                       f"{self.log('slurmd')[-3000:]}")
                last = f"first job {job} is {state or 'not listed'}"
            time.sleep(0.1)
        raise RuntimeError(f"test Slurm not ready after {timeout:.0f} s: {last}\n"
                           f"{self.log('slurmctld')[-3000:]}")

    def cancel_all(self, timeout: float = 20) -> None:
        """Cancel every job and wait until the controller lists none running."""
        self.command("scancel", "--full", "--user", str(os.getuid()))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = self.command("squeue", "-h", "-t", "PD,R,CG,S", "-o", "%i")
            if res.returncode != 0 or not res.stdout.strip():
                return
            time.sleep(0.3)

    def stop(self) -> None:
        """Cancel remaining jobs, stop the daemons this cluster started (by PID), clean up."""
        if self._procs and self.alive():
            try:
                self.cancel_all()
            except (OSError, subprocess.SubprocessError) as exc:
                logger.warning("could not cancel the test cluster's jobs: %s", exc)
        for name in ("slurmd", "slurmctld", "munged"):  # reverse start order
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                logger.warning("%s (pid %d) ignored SIGTERM; killing it", name, proc.pid)
                proc.kill()
                proc.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


def _slurm_conf(*, cluster: SlurmCluster, hostname: str, hw: dict[str, int],
                ctld_port: int, slurmd_port: int, munge_socket: Path) -> str:
    root = cluster.root
    topo = ""
    if {"SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore"} <= set(hw):
        topo = (f" Boards={hw.get('Boards', 1)} SocketsPerBoard={hw['SocketsPerBoard']} "
                f"CoresPerSocket={hw['CoresPerSocket']} ThreadsPerCore={hw['ThreadsPerCore']}")
    return f"""# written by tests/compute/slurm_cluster.py for one test session
ClusterName=spotkit{ctld_port}
SlurmctldHost={hostname}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0
JobCompType=jobcomp/filetxt
JobCompLoc={cluster.jobcomp}
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MinJobAge=30
EnforcePartLimits=ALL
KillWait=2
OverTimeLimit=0
InactiveLimit=0
Waittime=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={cluster.node} NodeHostname={hostname} NodeAddr=127.0.0.1 CPUs={cluster.cpus}{topo} RealMemory={cluster.memory_mb} State=UNKNOWN
PartitionName={cluster.partition} Nodes={cluster.node} Default=YES MaxTime=INFINITE State=UP
"""  # noqa: E501


def _start_munged(root: Path) -> tuple[subprocess.Popen, Path]:
    import pwd

    munge = pwd.getpwnam("munge")
    mdir = root / "munge"
    mdir.mkdir(mode=0o700)
    key = mdir / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o400)
    for path in (mdir, key):
        os.chown(path, munge.pw_uid, munge.pw_gid)
    sock = mdir / "munge.socket"
    proc = subprocess.Popen(
        [_exe("munged"), "--foreground", "--force", f"--key-file={key}", f"--socket={sock}",
         f"--pid-file={mdir / 'munged.pid'}", f"--log-file={mdir / 'munged.log'}",
         f"--seed-file={mdir / 'munged.seed'}", "--num-threads=2"],
        user=munge.pw_uid, group=munge.pw_gid, extra_groups=[],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            log = (mdir / "munged.log").read_text(errors="replace") if (
                mdir / "munged.log").exists() else ""
            proc.kill()
            raise RuntimeError(f"munged did not start (exit {proc.poll()}): {log[-2000:]}")
        time.sleep(0.05)
    return proc, sock


def start_cluster(base: str | os.PathLike | None = None, *, timeout: float = 60) -> SlurmCluster:
    """Start munged, slurmctld and slurmd for a private single-node cluster.

    Parameters
    ----------
    base : path-like, optional
        Directory in which the cluster's own directory is made (default: the system temp
        dir). Every parent must be traversable by the ``munge`` user.
    timeout : float
        Seconds to wait for the first job to run.

    Returns
    -------
    SlurmCluster
        Running; call :meth:`SlurmCluster.stop` when done.
    """
    reason = skip_reason()
    if reason:
        raise RuntimeError(reason)
    root = Path(tempfile.mkdtemp(prefix="spotkit-slurm-", dir=base))
    root.chmod(0o755)  # munged (user munge) must reach its directory inside
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir()
    hw = _hardware()
    hostname = socket.gethostname()
    cpus = int(hw.get("CPUs") or os.cpu_count() or 1)
    # conservative: half the memory slurmd sees, so the node never fails its health check
    memory_mb = max(256, int(hw.get("RealMemory", 2048)) // 2)
    cluster = SlurmCluster(root=root, conf=root / "slurm.conf", node=hostname,
                           partition=PARTITION, cpus=cpus, memory_mb=memory_mb,
                           jobcomp=root / "jobcomp.txt")
    try:
        munged, sock = _start_munged(root)
        cluster._procs["munged"] = munged
        cluster.conf.write_text(_slurm_conf(
            cluster=cluster, hostname=hostname, hw=hw, ctld_port=_free_port(),
            slurmd_port=_free_port(), munge_socket=sock))
        env = cluster.env
        common = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
                  "stderr": subprocess.DEVNULL, "env": env, "start_new_session": True}
        cluster._procs["slurmctld"] = subprocess.Popen(
            [_exe("slurmctld"), "-D", "-c", "-i", "-f", str(cluster.conf)], **common)
        cluster._procs["slurmd"] = subprocess.Popen(
            [_exe("slurmd"), "-D", "-N", cluster.node, "-f", str(cluster.conf)], **common)
        cluster.wait_ready(timeout)
    except BaseException:
        cluster.stop()
        raise
    logger.info("test Slurm up: SLURM_CONF=%s (node %s, %d CPUs)", cluster.conf, cluster.node,
                cluster.cpus)
    return cluster


if __name__ == "__main__":  # pragma: no cover - manual use
    logging.basicConfig(level=logging.INFO)
    c = start_cluster()
    print(f"export SLURM_CONF={c.conf}")
    try:
        input("cluster running; press Enter to stop ")
    finally:
        c.stop()
