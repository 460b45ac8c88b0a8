"""A real single-node SLURM (munge + slurmctld + slurmd, Debian packages) for the launch tests.

:func:`start_slurm` installs the packages with apt when they are missing, writes ``/etc/slurm/slurm.conf``
(one node: this machine, one partition ``debug``), starts the three daemons and returns a
:class:`SlurmCluster`; ``stop()`` sends SIGTERM to each daemon by its pid file (slurmd, slurmctld, munged).
A cluster that was already running (a ``sinfo`` that answers) is reused and left running.
:func:`unavailable_reason` says why SLURM cannot be set up here (not root, no apt), so tests skip with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PARTITION = "debug"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
PID_FILES = ("/run/slurm/slurmd.pid", "/run/slurm/slurmctld.pid", "/run/munge/munged.pid")  # stop order
DIRS = ("/run/munge", "/var/spool/slurmctld", "/var/spool/slurmd", "/var/log/slurm", "/run/slurm")
SLURM_BINARIES = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun", "slurmctld", "slurmd", "munged")


def unavailable_reason() -> str | None:
    """Why a SLURM cluster cannot be installed and started on this machine, or None when it can."""
    if all(shutil.which(b) for b in SLURM_BINARIES) and _sinfo_ok():
        return None  # one is already running
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root (uid 0); run the SLURM tests as root"
    if not all(shutil.which(b) for b in SLURM_BINARIES) and not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is unavailable to install slurm-wlm and munge"
    return None


def _sinfo_ok() -> bool:
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and any(s.strip() in ("idle", "mixed", "allocated") for s in proc.stdout.split())


def install() -> None:
    if all(shutil.which(b) for b in SLURM_BINARIES):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")


def slurm_conf(host: str, cpus: int) -> str:
    return f"""\
ClusterName=frontier-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MinJobAge=300
KillWait=10
NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    partition: str = PARTITION
    started: list[str] = field(default_factory=list)  # pid files of the daemons this object started

    def stop(self) -> None:
        """SIGTERM each daemon we started, by pid file, waiting for each to exit (never by name)."""
        for pid_file in PID_FILES:
            if pid_file not in self.started:
                continue
            with contextlib.suppress(OSError, ValueError):
                pid = int(Path(pid_file).read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                    time.sleep(0.2)
        self.started.clear()


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def _pid_alive(pid_file: str) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return Path(f"/proc/{int(Path(pid_file).read_text().split()[0])}").exists()
    return False


def start_slurm() -> SlurmCluster:
    """Install (apt) and start munge, slurmctld and slurmd; reuse a running cluster."""
    cluster = SlurmCluster()
    if all(shutil.which(b) for b in SLURM_BINARIES) and _sinfo_ok():
        return cluster
    install()
    for directory in DIRS:
        Path(directory).mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    host = socket.gethostname().split(".")[0]
    if not SLURM_CONF.exists() or f"SlurmctldHost={host}" not in SLURM_CONF.read_text():
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(slurm_conf(host, os.cpu_count() or 1))
    if not _pid_alive(PID_FILES[2]):
        subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], check=True, timeout=30)
        cluster.started.append(PID_FILES[2])
    _wait(lambda: subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0, 20, "munge")
    for daemon, pid_file in (("slurmctld", PID_FILES[1]), ("slurmd", PID_FILES[0])):
        if not _pid_alive(pid_file):
            subprocess.run([daemon], check=True, timeout=30)
            cluster.started.append(pid_file)
    try:
        _wait(_sinfo_ok, 60, "sinfo to report an idle node")
    except RuntimeError:
        cluster.stop()
        raise
    return cluster
