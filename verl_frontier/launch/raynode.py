"""Start one Ray node in the foreground: ``python -m verl_frontier.launch.raynode [--head | --address A] ...``.

It picks free ports for everything Ray would otherwise put on fixed defaults (node manager, object manager,
dashboard agent, runtime-env agent, metrics), so several Ray nodes (several clusters, or a head and a worker of
one cluster) can share a machine, then ``exec``s ``ray start --block``: the process *is* the Ray node, so the
SLURM job step that runs it (or whoever started it) stops the node with one SIGTERM; no ``ray stop``, which
would stop every Ray cluster on the machine.

``--free-port`` only prints a free TCP port (the SLURM job asks the head node for its GCS port this way).
Token authentication (on by default in Ray 2.60) is switched off: ``RAY_AUTH_MODE=disabled``.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free right now (bound together, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name, "").split(":")[-1].split("(")[0]  # "a100:8" -> "8", "2(x2)" -> "2"
        if value.isdigit():
            return int(value)
    return None


def ray_start_command(
    *,
    head: bool,
    address: str | None = None,
    port: int | None = None,
    node_ip: str | None = None,
    temp_dir: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    dashboard_port: int | None = None,
    ray_executable: str | None = None,
) -> list[str]:
    """The ``ray start --block`` command line for one node, with free ports for every per-node service."""
    if head == bool(address):
        raise ValueError("give exactly one of head=True or address")
    ray = ray_executable or str(Path(sys.executable).with_name("ray"))
    node_manager, object_manager, agent_http, agent_grpc, runtime_env, metrics = free_ports(6)
    cmd = [ray, "start", "--block", "--disable-usage-stats"]
    if head:
        cmd += ["--head", f"--port={port or free_ports(1)[0]}"]
        if dashboard_port:
            cmd += ["--include-dashboard=true", "--dashboard-host=0.0.0.0", f"--dashboard-port={dashboard_port}"]
        else:
            cmd += ["--include-dashboard=false"]
    else:
        cmd += [f"--address={address}"]
    cmd += [
        f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}",
        f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--metrics-export-port={metrics}",
    ]
    if node_ip:
        cmd += [f"--node-ip-address={node_ip}"]
    if temp_dir:
        cmd += [f"--temp-dir={temp_dir}"]
    # SLURM tells a job step what it got; outside SLURM Ray detects the machine
    num_cpus = num_cpus if num_cpus is not None else _env_int("SLURM_CPUS_ON_NODE")
    num_gpus = num_gpus if num_gpus is not None else _env_int("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE")
    if num_cpus is not None:
        cmd += [f"--num-cpus={num_cpus}"]
    if num_gpus is not None:
        cmd += [f"--num-gpus={num_gpus}"]
    return cmd


def main(argv: list[str] | None = None) -> int:
    from verl_frontier.arguments import NON_NEGATIVE_INT, ArgumentParser, Kind, int_range, output_dir

    from .node_check import ray_address

    port = int_range(1, 65535)
    parser = ArgumentParser(prog="python -m verl_frontier.launch.raynode", description=__doc__.split("\n")[0])
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--head", action="store_true", help="start a head node (GCS)")
    role.add_argument("--address", type=Kind("ip:port", ray_address), help="join the cluster whose head is at ip:port")
    role.add_argument("--free-port", action="store_true", help="print a free TCP port and exit")
    parser.add_argument("--port", type=port, help="head: GCS port (default: a free one)")
    parser.add_argument("--node-ip", type=Kind("address", _node_ip), help="--node-ip-address for ray start")
    parser.add_argument("--temp-dir", type=output_dir, help="Ray temp dir of this node (keep it short: socket paths)")
    parser.add_argument("--num-cpus", type=NON_NEGATIVE_INT, help="default: $SLURM_CPUS_ON_NODE, else detected")
    parser.add_argument(
        "--num-gpus", type=NON_NEGATIVE_INT, help="default: $SLURM_GPUS_ON_NODE, else detected (CPU mode: fake slots)"
    )
    parser.add_argument("--dashboard-port", type=port, help="head: serve the dashboard and Ray Jobs API on this port")
    args = parser.parse_args(argv)
    for option in ("port", "dashboard_port"):
        if getattr(args, option) is not None and not args.head:
            parser.error(f"argument --{option.replace('_', '-')}: only a head node (--head) takes it")
    if args.free_port:
        print(free_ports(1)[0])
        return 0
    cmd = ray_start_command(
        head=args.head,
        address=args.address,
        port=args.port,
        node_ip=args.node_ip,
        temp_dir=str(args.temp_dir) if args.temp_dir is not None else None,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        dashboard_port=args.dashboard_port,
    )
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print("[raynode] " + " ".join(cmd), flush=True)
    os.execv(cmd[0], cmd)
    return 1  # unreachable


def _node_ip(value) -> str:
    text = str(value).strip()
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"must be an IP address or host name, got {value!r}")
    return text


if __name__ == "__main__":
    sys.exit(main())
