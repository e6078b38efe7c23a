"""A real single-node SLURM cluster, for the SLURM tests and for trying the SLURM path on one machine.

This file is the one source of truth for the local cluster's configuration (`slurm_conf`): the pytest
fixture in `tests/conftest.py` and `slurm/local-cluster.sh` both use it. It needs only the standard
library, so the shell script can run it with any Python 3.10+.

Everything a cluster owns lives in one private directory (slurm.conf, its own munge key and socket,
state, spool, logs) and it listens on free ports, so nothing under /etc or /run is touched and two
clusters (say, two test sessions on one machine) can run side by side. Clients find it through
`SLURM_CONF=<dir>/slurm.conf`; `local_cluster()` sets that in `os.environ` while it is open, because
submitit calls sbatch, srun and scontrol with the caller's environment and jobs inherit it.

Accounting is off (no slurmdbd): `sacct` fails, so submitit's `job.state` stays "UNKNOWN" and
`job.done()` only turns true once the job's result pickle exists. Ask the controller instead:
`SlurmCluster.job_state` (`scontrol show job`), which keeps finished jobs for `MIN_JOB_AGE_S`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PARTITION = "local"
MAX_ARRAY_SIZE = 1001  # array indices 0..1000 (Slurm's default, stated so tests can rely on it)
CRED_EXPIRE_S = 5  # job credential lifetime; Slurm also holds a requeued job this long before it may restart
KILL_WAIT_S = 2  # SIGTERM -> SIGKILL on cancel, requeue, time limit
OVERSUBSCRIBE = 2  # jobs per CPU: 1-CPU array tasks run 2 x nproc at once (sleepy test jobs need no real CPU)
MIN_JOB_AGE_S = 3600  # finished jobs stay visible to `scontrol show job` this long
PACKAGES = ("slurm-wlm", "munge")
PROGRAMS = ("sbatch", "srun", "sinfo", "scontrol", "slurmctld", "slurmd", "munged", "mungekey")
DIR_PREFIX = "neve-slurm-"
DEFAULT_CLI_DIR = Path(tempfile.gettempdir()) / "neve-slurm"
START_TIMEOUT_S = 60.0


class SlurmUnavailable(RuntimeError):
    """No cluster can be had here (not root and none running): the SLURM tests skip with this reason."""


def slurm_conf(*, directory: Path, node: str, cpus: int, memory_mb: int, ctld_port: int, slurmd_port: int) -> str:
    """The local cluster's slurm.conf: one node, one partition, fast requeues, no accounting."""
    d = directory
    return f"""\
# Written by neve's tests/slurm_cluster.py; a private single-node cluster.
ClusterName=neve-local
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.socket,cred_expire={CRED_EXPIRE_S}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
PlugStackConfig={d}/plugstack.conf
# no cgroups, so it works in containers and on any laptop. pgid, not linuxproc: when a job is cancelled or
# requeued its whole process group dies, as with cgroups; linuxproc lost a python whose parent shell had exited
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
# look at pending jobs every second: a requeued job restarts as soon as it is eligible, not up to 30-60 s later
SchedulerParameters=bf_interval=1,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# the node is whatever slurm.conf says, even inside a cgroup-limited container
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
MaxArraySize={MAX_ARRAY_SIZE}
MinJobAge={MIN_JOB_AGE_S}
KillWait={KILL_WAIT_S}
SlurmctldTimeout=10
SlurmdTimeout=10
InactiveLimit=0
Waittime=0
NodeName={node} NodeHostname={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:{OVERSUBSCRIBE}
"""


@dataclass
class SlurmCluster:
    """A cluster the tests can submit to: its partition, its limits, and job queries that need no sacct."""

    partition: str
    max_array_size: int
    conf: Path | None = None  # our slurm.conf; None for a cluster that was already there
    directory: Path | None = None  # the private directory; None for a cluster that was already there
    pids: dict[str, int] = field(default_factory=dict)  # the daemons we started, by name
    slots: int | None = None  # 1-CPU jobs that can run at once (our node: CPUs x OverSubscribe); None: unknown
    processes: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)  # when started by us here

    @property
    def started_here(self) -> bool:
        return self.conf is not None

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm client commands (and for submitit, which inherits it)."""
        env = dict(os.environ)
        if self.conf is not None:
            env["SLURM_CONF"] = str(self.conf)
        return env

    def command(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        """Run a Slurm client command against this cluster and return its stdout."""
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"`{' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def show_job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Reason, RunTime, Restarts, ...); {} once purged."""
        done = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], env=self.env,
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            if "Invalid job id" in done.stderr:
                return {}
            raise RuntimeError(f"scontrol show job {job_id} failed: {done.stderr.strip()}")
        line = done.stdout.splitlines()[0] if done.stdout.strip() else ""
        return dict(re.findall(r"(\S+?)=(.*?)(?= \S+?=|$)", line))

    def job_state(self, job_id: str) -> str:
        """PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ... ('' once the controller forgot the job)."""
        return self.show_job(job_id).get("JobState", "")

    def wait_for_state(self, job_id: str, states: Iterable[str], timeout: float = 60) -> str:
        """Poll until the job is in one of `states`; return it, or raise TimeoutError with the last one."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in wanted:
                return state
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} still {state or 'unknown'} after {timeout} s, expected {sorted(wanted)}")

    def queue(self) -> dict[str, str]:
        """Pending and running jobs: job id (array tasks as <job>_<task>) -> state."""
        out = self.command("squeue", "-h", "-o", "%i %T")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def requeue(self, job_id: str) -> None:
        """`scontrol requeue`: Slurm SIGTERMs the job, then SIGKILLs it after KillWait, and queues it again."""
        self.command("scontrol", "requeue", str(job_id))


# --- finding or installing Slurm -------------------------------------------------------------------------------


def existing_cluster() -> SlurmCluster | None:
    """The cluster this environment already talks to (SLURM_CONF or /etc/slurm), if it answers."""
    if shutil.which("sinfo") is None:
        return None
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:  # a slurm.conf whose controller is down
        return None
    if done.returncode != 0 or not done.stdout.strip():
        return None
    partitions = done.stdout.split()
    default = next((p[:-1] for p in partitions if p.endswith("*")), partitions[0].rstrip("*"))
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=20).stdout
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    return SlurmCluster(partition=default, max_array_size=int(match.group(1)) if match else MAX_ARRAY_SIZE)


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]


def ensure_installed() -> None:
    """Install Debian's slurm-wlm and munge with apt-get if any program is missing (root only)."""
    missing = missing_programs()
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SlurmUnavailable(
            f"Slurm is not installed ({', '.join(missing)} missing) and installing it needs root and apt-get: "
            f"run `sudo apt-get install {' '.join(PACKAGES)}`, or deselect these tests with -m 'not slurm'")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                  "-o", "DPkg::Lock::Timeout=300", *PACKAGES]):
        done = subprocess.run(args, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(args)}` failed ({done.returncode}):\n{done.stdout[-2000:]}"
                               f"{done.stderr[-2000:]}\nInstall {' '.join(PACKAGES)} by hand or deselect "
                               f"the SLURM tests with -m 'not slurm'.")
    still = missing_programs()
    if still:
        raise RuntimeError(f"installed {' '.join(PACKAGES)} but {', '.join(still)} still missing")


# --- starting and stopping a private cluster ---------------------------------------------------------------------


def _program(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        total_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    return max(256, int(total_kb / 1024 * 0.9))  # a bit below the real memory, so the node never drains for it


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _die_with_parent() -> None:
    """Runs in the daemon's child process: SIGKILL it when the process that started it dies, however it dies.

    SIGKILL, not SIGTERM: slurmd does not exit on SIGTERM while its job steps cannot reach a dead slurmctld.
    Jobs (slurmstepd, double-forked by slurmd) survive it; the next session kills them, see
    `_remove_abandoned_dirs`.
    """
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _alive(pid: int, directory: Path) -> bool:
    """Whether `pid` is still a daemon of the cluster in `directory` (its command line names the directory)."""
    try:
        return str(directory) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _read_pids(directory: Path) -> dict[str, int]:
    pids = {}
    for name in ("munged", "slurmctld", "slurmd"):
        try:
            pids[name] = int((directory / f"{name}.daemon-pid").read_text())
        except (OSError, ValueError):
            continue
    return pids


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _prepare(directory: Path) -> None:
    """Empty the state left by any earlier cluster in `directory` (a crashed run), keep nothing but the dir."""
    for name in ("state", "spool"):
        shutil.rmtree(directory / name, ignore_errors=True)
        (directory / name).mkdir(parents=True)
    for stale in directory.glob("*.pid"):
        stale.unlink()
    for log in [*directory.glob("*.log"), *directory.glob("*.out")]:
        log.write_bytes(b"")  # so the logs shown on a failed start are this start's
    (directory / "munge.socket").unlink(missing_ok=True)
    (directory / "munge.socket.lock").unlink(missing_ok=True)
    directory.chmod(0o755)  # munged wants its socket's directory searchable by everyone


def start_cluster(directory: Path, *, detach: bool = False) -> SlurmCluster:
    """Start munged, slurmctld and slurmd for a private cluster in `directory`; wait until its node is idle.

    detach=False (tests): the daemons get SIGKILL when this process dies, so a crashed or killed pytest
    leaves no daemon running. detach=True (the shell script): they outlive this process.
    """
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    _prepare(directory)
    node = socket.gethostname().split(".")[0]
    ctld_port, slurmd_port = _free_ports(2)
    conf = directory / "slurm.conf"
    conf.write_text(slurm_conf(directory=directory, node=node, cpus=_cpus(), memory_mb=_memory_mb(),
                               ctld_port=ctld_port, slurmd_port=slurmd_port))
    (directory / "plugstack.conf").write_text("")  # no SPANK plugins, whatever /etc/slurm holds
    key = directory / "munge.key"
    if not key.exists():
        subprocess.run([_program("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
    env = dict(os.environ, SLURM_CONF=str(conf))
    commands = {
        "munged": [_program("munged"), "--foreground", f"--socket={directory}/munge.socket",
                   f"--key-file={key}", f"--pid-file={directory}/munged.pid",
                   f"--seed-file={directory}/munged.seed", f"--log-file={directory}/munged.log"],
        "slurmctld": [_program("slurmctld"), "-D", "-c", "-i", "-f", str(conf)],
        "slurmd": [_program("slurmd"), "-D", "-c", "-N", node, "-f", str(conf)],
    }
    cluster = SlurmCluster(partition=PARTITION, max_array_size=MAX_ARRAY_SIZE, conf=conf, directory=directory,
                           slots=_cpus() * OVERSUBSCRIBE)
    try:
        for name, command in commands.items():
            with open(directory / f"{name}.out", "wb") as out:
                process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, cwd=directory, start_new_session=detach,
                                           preexec_fn=None if detach else _die_with_parent)
            cluster.pids[name] = process.pid
            cluster.processes[name] = process
            (directory / f"{name}.daemon-pid").write_text(str(process.pid))
            if name == "munged":
                _wait(lambda: (directory / "munge.socket").exists(), cluster, "munged to open its socket", 10)
        _wait(lambda: _node_state(cluster) in {"idle", "mixed", "allocated"}, cluster, "the node to be idle",
              START_TIMEOUT_S)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def _node_state(cluster: SlurmCluster) -> str:
    done = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=cluster.env, capture_output=True, text=True,
                          timeout=20)
    return done.stdout.strip().rstrip("*~#") if done.returncode == 0 else ""


def _wait(ready, cluster: SlurmCluster, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [name for name, process in cluster.processes.items() if process.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"--- {name}:\n{_tail(cluster.directory / f'{name}.out')}\n"
                             f"{_tail(cluster.directory / f'{name}.log')}" for name in cluster.pids)
            problem = f"{', '.join(dead)} exited" if dead else f"timed out after {timeout} s"
            raise RuntimeError(f"local SLURM cluster in {cluster.directory}: waiting for {what}, {problem}\n{logs}")
        time.sleep(0.1)


def _daemon_running(cluster: SlurmCluster, name: str) -> bool:
    if name in cluster.processes:
        return cluster.processes[name].poll() is None
    return name in cluster.pids and _alive(cluster.pids[name], cluster.directory)


def stop_cluster(cluster: SlurmCluster, *, timeout: float = 5) -> None:
    """Cancel every job, then stop only the daemons this cluster started (by pid, checked against its dir)."""
    if not cluster.started_here:
        return
    if _daemon_running(cluster, "slurmctld"):
        with contextlib.suppress(Exception):
            # SIGKILL: submitit ignores the SIGTERM of a plain cancel. No waiting for the queue to drain (srun
            # takes ~3 s to end a step): _kill_job_processes below sweeps up whatever job process is left.
            cluster.command("scancel", f"--partition={cluster.partition}", "--full", "--signal=KILL", check=False)
            cluster.command("scancel", f"--partition={cluster.partition}", check=False)
    for name in ("slurmd", "slurmctld", "munged"):
        # slurmd waits ~4 s for the steps of cancelled jobs to report before it exits; its state is throwaway
        grace = 1.0 if name == "slurmd" else timeout
        process = cluster.processes.get(name)
        if process is not None:  # our child: wait on it directly (it may not even have exec'd yet)
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            continue
        pid = cluster.pids.get(name)  # started by an earlier `start` of the command line: check before killing
        if pid is None or not _alive(pid, cluster.directory):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid, cluster.directory) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid, cluster.directory):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _kill_job_processes(cluster.conf)
    for name in cluster.pids:
        (cluster.directory / f"{name}.daemon-pid").unlink(missing_ok=True)
    cluster.pids.clear()
    cluster.processes.clear()


def _kill_job_processes(conf: Path) -> int:
    """SIGKILL what jobs of the cluster configured by `conf` left behind (slurmstepd, job processes).

    They are found by their environment: slurmd passes SLURM_CONF to every slurmstepd, and jobs carry it
    with their SLURM_JOB_ID. Only needed after a crash; a clean stop leaves none. Returns how many.
    """
    mark = f"SLURM_CONF={conf}".encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if mark in env and (comm == "slurmstepd" or any(v.startswith(b"SLURM_JOB_ID=") for v in env)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def _remove_abandoned_dirs() -> None:
    """Clean up after test sessions that died: their lock is free. Stop what they left, delete their dir."""
    for old in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        try:
            if time.time() - old.stat().st_mtime < 10:  # maybe a session that has not taken its lock yet
                continue
            with open(old / "lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alive = {name: pid for name, pid in _read_pids(old).items() if _alive(pid, old)}
                stop_cluster(SlurmCluster(PARTITION, MAX_ARRAY_SIZE, old / "slurm.conf", old, alive))
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue


@contextlib.contextmanager
def local_cluster() -> Iterator[SlurmCluster]:
    """A working cluster for the duration of the block: the one already configured, or a private one.

    A private one is started in a fresh temp dir (installing Slurm first if needed, root only), exported
    through os.environ["SLURM_CONF"] while the block runs, and torn down afterwards: jobs cancelled, our
    daemons stopped, the dir removed, SLURM_CONF restored. Raises SlurmUnavailable when none can be had.
    """
    existing = existing_cluster()
    if existing is not None:
        yield existing
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable(
            "no SLURM cluster answers `sinfo` and starting a private one needs root: run the tests as root, "
            "or start one with `sudo slurm/local-cluster.sh start` and export the SLURM_CONF it prints, "
            "or deselect these tests with -m 'not slurm'")
    ensure_installed()
    _remove_abandoned_dirs()
    directory = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
    lock = open(directory / "lock", "a")  # held while we live, so a concurrent session never deletes our dir
    fcntl.flock(lock, fcntl.LOCK_EX)
    saved = os.environ.get("SLURM_CONF")
    try:
        cluster = start_cluster(directory)
        os.environ["SLURM_CONF"] = str(cluster.conf)
        try:
            yield cluster
        finally:
            stop_cluster(cluster)
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        shutil.rmtree(directory, ignore_errors=True)
        lock.close()


# --- the command line, for slurm/local-cluster.sh ---------------------------------------------------------------


def _running(directory: Path) -> SlurmCluster | None:
    conf = directory / "slurm.conf"
    pids = _read_pids(directory)
    if not conf.exists() or not pids or not all(_alive(pid, directory) for pid in pids.values()):
        return None
    return SlurmCluster(partition=PARTITION, max_array_size=MAX_ARRAY_SIZE, conf=conf, directory=directory,
                        pids=pids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A private single-node SLURM cluster on this machine.")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("NEVE_SLURM_DIR", DEFAULT_CLI_DIR)),
                        help="where the cluster keeps its config, state and logs (default: %(default)s)")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    running = _running(directory)
    if args.action == "status":
        if running is None:
            print(f"not running (directory {directory})")
            return 1
        print(running.command("sinfo").rstrip())
        print(running.command("squeue").rstrip())
        print(f"export SLURM_CONF={running.conf}")
        return 0
    if args.action in ("start", "stop") and os.geteuid() != 0:
        print(f"{args.action} needs root (slurmd runs jobs as their users): use sudo", file=sys.stderr)
        return 2
    if args.action == "stop":
        alive = {name: pid for name, pid in _read_pids(directory).items() if _alive(pid, directory)}
        stop_cluster(SlurmCluster(PARTITION, MAX_ARRAY_SIZE, directory / "slurm.conf", directory, dict(alive)))
        print(f"stopped the cluster in {directory}" if alive else f"not running (directory {directory})")
        return 0
    if running is not None:
        print(f"already running; export SLURM_CONF={running.conf}")
        return 0
    # what a crashed cluster left (some daemons, orphaned jobs): stop it before starting afresh
    stale = {n: p for n, p in _read_pids(directory).items() if _alive(p, directory)}
    stop_cluster(SlurmCluster(PARTITION, MAX_ARRAY_SIZE, directory / "slurm.conf", directory, stale))
    ensure_installed()
    started = time.monotonic()
    cluster = start_cluster(directory, detach=True)
    print(f"started in {time.monotonic() - started:.1f} s: partition '{PARTITION}', {_cpus()} CPUs, "
          f"logs in {directory}\nexport SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
