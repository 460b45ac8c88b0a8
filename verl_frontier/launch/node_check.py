"""Check that every node of a running Ray cluster has the verl-frontier plugin registrations.

``python -m verl_frontier.launch.node_check --address ip:port --nodes N`` waits until N nodes are alive,
then runs one task pinned to each node that imports verl (loading the ``verl.plugins`` entry points, as each
of verl's Ray workers does) and calls :func:`verl_frontier.registration.assert_registered`. Exit code 1 names
the node and what is missing; the launcher runs it in the job before verl's trainer.
"""

from __future__ import annotations

import os
import sys
import time


def _registrations_here() -> dict:
    import socket

    os.environ.setdefault("VERL_LOGGING_LEVEL", "ERROR")
    from verl_frontier.registration import RegistrationError, assert_registered

    try:
        found = assert_registered()
    except RegistrationError as exc:
        return {"host": socket.gethostname(), "ok": False, "error": str(exc)}
    return {"host": socket.gethostname(), "ok": True, "count": sum(len(v) for v in found.values())}


class NodesMissing(RuntimeError):
    """Fewer Ray nodes than expected joined within the timeout."""


def check_nodes(address: str | None, nodes: int, timeout: float = 300.0) -> list[dict]:
    """Wait for ``nodes`` alive Ray nodes and run the registration check on each; returns one dict per node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address=address or "auto", logging_level="ERROR", log_to_driver=False)
    try:
        deadline = time.monotonic() + timeout
        while True:
            alive = [n for n in ray.nodes() if n["Alive"]]
            if len(alive) >= nodes:
                break
            if time.monotonic() > deadline:
                raise NodesMissing(f"only {len(alive)}/{nodes} Ray nodes joined within {timeout:.0f} s")
            time.sleep(2)
        remote = ray.remote(num_cpus=0)(_registrations_here)
        refs = [
            remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in alive
        ]
        results = ray.get(refs, timeout=timeout)
        for node, result in zip(alive, results):
            result["node_id"] = node["NodeID"][:12]
            result["node_ip"] = node["NodeManagerAddress"]
        return results
    finally:
        ray.shutdown()


def ray_address(value) -> str:
    """``ip:port`` (also ``ray://host:port``) or ``auto``/``local``: a port, when given, is in 1..65535."""
    text = str(value).strip()
    if not text:
        raise ValueError("must be ip:port (or auto), got ''")
    if text in ("auto", "local"):
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or host.endswith("/"):
        raise ValueError(f"must be ip:port (or auto), got {text!r}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"the port of {text!r} must be an integer in 1..65535")
    return text


def main(argv: list[str] | None = None) -> int:
    from verl_frontier.arguments import POSITIVE_FLOAT, POSITIVE_INT, ArgumentParser, Kind

    parser = ArgumentParser(prog="python -m verl_frontier.launch.node_check", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--address",
        type=Kind("ip:port", ray_address),
        default=os.environ.get("RAY_ADDRESS") or None,
        help="Ray GCS ip:port (default RAY_ADDRESS)",
    )
    parser.add_argument("--nodes", type=POSITIVE_INT, default=1, help="wait for this many alive nodes")
    parser.add_argument("--timeout", type=POSITIVE_FLOAT, default=300.0, help="seconds to wait for the nodes")
    args = parser.parse_args(argv)
    try:
        results = check_nodes(args.address, args.nodes, args.timeout)
    except NodesMissing as exc:
        print(f"[node_check] error: {exc}", file=sys.stderr, flush=True)
        return 1
    bad = [r for r in results if not r["ok"]]
    for r in results:
        state = f"{r['count']} registrations OK" if r["ok"] else f"FAILED: {r['error']}"
        print(f"[node_check] node {r['node_id']} ({r['host']}, {r['node_ip']}): {state}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
