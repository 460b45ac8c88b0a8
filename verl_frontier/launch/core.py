"""One launcher for every recipe: single node, a SLURM job (``sbatch``), or an existing Ray cluster (Ray Jobs API).

:func:`plan_launch` composes the recipe with the overrides (the same Hydra composition ``frontier validate``
and verl's trainer use), applies the launch options and runs the frontier config checks, including the launch
ones (world size vs batch sizes, the SLURM partition), all before anything is submitted. It returns a
:class:`LaunchPlan`: the trainer command, the environment for the job, and where the checkpoints, metrics
(verl's file logger) and logs of this launch go. :func:`launch` then runs it in the chosen mode.

Launch options default to the recipe's values: the training layout from ``trainer.nnodes`` /
``trainer.n_gpus_per_node``; partition, time, account, setup lines, env vars, ... from an optional
``launch.yaml`` in the recipe folder (keys = :class:`LaunchOptions` fields). The job itself (SLURM nodes and
GPUs per node, Ray nodes) is sized by :func:`job_layout` from every GPU resource pool verl's trainer creates:
training, a standalone reward model, the distillation teacher, a standalone rollout.

``+platform=cpu`` among the overrides is the CPU mode: no GPUs are requested from SLURM, each Ray node gets
fake GPU slots (``verl_cpu``), so any tiny recipe goes through the whole SLURM / multi-node path on one machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_frontier.validation import FrontierConfigError

MODES = ("local", "slurm", "ray")
CPU_SWITCH = "+platform=cpu"
#: environment variables forwarded to the job when they are set where ``frontier launch`` runs
FORWARD_ENV = ("FRONTIER_WORLD_DIR", "FRONTIER_RECIPES_DIR", "HF_HOME", "HF_HUB_OFFLINE", "WANDB_API_KEY")
TERMINAL_SLURM_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED")
LAUNCH_YAML = "launch.yaml"


@dataclass
class LaunchOptions:
    """Options of ``frontier launch``; ``None`` means: the recipe's value (``launch.yaml``, else its config)."""

    mode: str = "local"
    nodes: int | None = None  # trainer.nnodes
    gpus_per_node: int | None = None  # trainer.n_gpus_per_node
    node_gpus: int | None = None  # GPUs one cluster node has: verl's pools are packed onto nodes of this size
    cpus_per_node: int | None = None  # SLURM --cpus-per-task (one task per node)
    partition: str | None = None
    time: str | None = None  # SLURM --time
    account: str | None = None
    setup: list[str] = field(default_factory=list)  # shell lines run first in the job: venv, module load, container
    env: dict[str, str] = field(default_factory=dict)  # extra env vars for the job and every Ray worker
    sbatch_args: list[str] = field(default_factory=list)  # more sbatch flags, e.g. --exclusive, --qos=high
    job_name: str | None = None
    run_dir: str | None = None  # default ./runs/<config name>
    ray_address: str | None = None  # ray mode: the cluster's dashboard, http://head:8265
    python: str | None = None  # interpreter with verl-frontier installed, on the nodes (default: this one)


@dataclass
class LaunchPlan:
    mode: str
    recipe: str
    config_name: str
    recipe_dir: Path
    cpu: bool
    nodes: int  # the job's nodes (SLURM --nodes, Ray nodes): every resource pool of verl, see job_layout
    gpus_per_node: int  # the job's GPUs per node (SLURM --gpus-per-node; CPU mode: fake GPU slots per Ray node)
    ray_num_cpus: int | None  # per Ray node; None: what SLURM gave / detected
    ray_num_gpus: int | None  # per Ray node; CPU mode: fake slots
    run_dir: Path
    launch_dir: Path
    checkpoint_dir: Path
    metrics_path: Path
    log_path: Path
    python: str
    trainer_overrides: list[str]  # ours, then the user's
    env: dict[str, str]
    options: LaunchOptions
    layout: JobLayout | None = None  # None in local mode (one machine)
    job_id: str | None = None
    script_path: Path | None = None

    @property
    def trainer_argv(self) -> list[str]:
        return [
            self.python,
            "-m",
            "verl.trainer.main_ppo",
            "--config-path",
            str(self.recipe_dir),
            "--config-name",
            self.config_name,
            *self.trainer_overrides,
        ]

    def record(self) -> dict[str, Any]:
        """What the launcher tells the user (and writes to ``<launch dir>/launch.json``)."""
        return {
            "mode": self.mode,
            "recipe": self.recipe,
            "config_name": self.config_name,
            "job_id": self.job_id,
            "nodes": self.nodes,
            "gpus_per_node": self.gpus_per_node,
            "layout": self.layout.describe() if self.layout else None,
            "cpu": self.cpu,
            "run_dir": str(self.run_dir),
            "launch_dir": str(self.launch_dir),
            "checkpoint_dir": str(self.checkpoint_dir),
            "metrics_path": str(self.metrics_path),
            "log_path": str(self.log_path),
            "script_path": str(self.script_path) if self.script_path else None,
            "command": shlex.join(self.trainer_argv),
        }

    def write_record(self) -> Path:
        path = self.launch_dir / "launch.json"
        path.write_text(json.dumps(self.record(), indent=2) + "\n")
        return path


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------


def parse_env(items: list[str]) -> dict[str, str]:
    """``["K=V", ...]`` -> dict; a bare ``K`` takes the value from this environment."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise FrontierConfigError(f"--env: invalid variable name in {item!r} (expected KEY=VALUE)")
        if not sep:
            if key not in os.environ:
                raise FrontierConfigError(f"--env: {key} is not set here; give it as {key}=VALUE")
            value = os.environ[key]
        out[key] = value
    return out


def recipe_launch_defaults(recipe_dir: Path) -> dict[str, Any]:
    """The optional ``launch.yaml`` of a recipe folder, checked against :class:`LaunchOptions`."""
    path = recipe_dir / LAUNCH_YAML
    if not path.is_file():
        return {}
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    known = {f.name for f in dataclasses.fields(LaunchOptions)} - {"mode", "ray_address"}
    for key in data:
        if key not in known:
            raise FrontierConfigError(f"{path}: unknown launch option '{key}' (known: {', '.join(sorted(known))})")
    return data


def merge_defaults(options: LaunchOptions, defaults: dict[str, Any]) -> LaunchOptions:
    """Fill the options the user left unset from the recipe's ``launch.yaml`` (env: the user's win per key)."""
    merged = dataclasses.replace(options)
    for key, value in defaults.items():
        current = getattr(merged, key)
        if key == "env":
            merged.env = {**{str(k): str(v) for k, v in (value or {}).items()}, **current}
        elif key in ("setup", "sbatch_args"):
            if not current:
                setattr(merged, key, [str(v) for v in (value if isinstance(value, list) else [value])])
        elif current is None:
            setattr(merged, key, value)
    return merged


# ---------------------------------------------------------------------------
# checks (also used by `frontier validate`)
# ---------------------------------------------------------------------------


def check_world_size(config: Any) -> None:
    """The batch sizes must split evenly over ``trainer.nnodes * trainer.n_gpus_per_node`` training ranks.

    Mirrors what verl asserts (``validate_config`` in the driver, the workers later, inside Ray):
    ``data.train_batch_size * rollout.n`` is sharded over all ranks, and each PPO mini-batch
    (``ppo_mini_batch_size * rollout.n``) over the data-parallel ranks; like verl, not with ``use_dynamic_bsz``.
    """
    from verl_frontier.validation import config_error, select

    nnodes, per_node = select(config, "trainer.nnodes"), select(config, "trainer.n_gpus_per_node")
    if nnodes is None and per_node is None:
        return  # not a trainer config (a partial one): nothing to check
    for key, value in (("trainer.nnodes", nnodes), ("trainer.n_gpus_per_node", per_node)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise config_error(key, "must be a positive integer", value)
    world = nnodes * per_node
    if select(config, "actor_rollout_ref.actor.use_dynamic_bsz"):
        return
    n = select(config, "actor_rollout_ref.rollout.n") or 1
    where = f"trainer.nnodes x trainer.n_gpus_per_node = {nnodes} x {per_node} = {world} ranks"
    batch = select(config, "data.train_batch_size")
    if isinstance(batch, int) and (batch * n) % world:
        raise config_error(
            "data.train_batch_size", f"{batch} prompts x rollout.n {n} = {batch * n} does not split over {where}"
        )
    sp = select(config, "actor_rollout_ref.actor.ulysses_sequence_parallel_size") or 1
    mini = select(config, "actor_rollout_ref.actor.ppo_mini_batch_size")
    dp = max(1, world // sp)
    if isinstance(mini, int) and ((mini * n) % dp or mini * n < dp):
        raise config_error(
            "actor_rollout_ref.actor.ppo_mini_batch_size",
            f"{mini} x rollout.n {n} = {mini * n} does not split over {dp} data-parallel ranks ({where})",
        )
    # each rank's share must be a whole number of micro-batches (verl asserts it inside the workers)
    shares = {
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": (mini * n // dp) if isinstance(mini, int) else None
    }
    if isinstance(batch, int):
        for key in (
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
            "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
        ):
            shares[key] = batch * n // dp
    for key, share in shares.items():
        micro = select(config, key)
        if isinstance(micro, int) and micro > 0 and share is not None and share % micro:
            raise config_error(
                key, f"each of the {dp} data-parallel ranks gets {share} samples, not a multiple of it ({where})", micro
            )


def slurm_partitions() -> list[str]:
    """Partitions ``sinfo`` lists (the default one without its ``*``)."""
    if not shutil.which("sinfo"):
        raise FrontierConfigError("--partition: sinfo not found; is SLURM installed here?")
    proc = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise FrontierConfigError(f"--partition: sinfo failed: {' '.join(proc.stderr.split())}")
    return sorted({line.strip().rstrip("*") for line in proc.stdout.splitlines() if line.strip()})


def check_partition(partition: str | None) -> None:
    """A named partition must be one ``sinfo`` lists (checked before ``sbatch``)."""
    if partition is None:
        return
    available = slurm_partitions()
    if partition not in available:
        raise FrontierConfigError(
            f"--partition: partition '{partition}' is not listed by sinfo (available: {', '.join(available) or 'none'})"
        )


# ---------------------------------------------------------------------------
# job size: verl's resource pools on identical nodes
# ---------------------------------------------------------------------------

#: GPUs of one cluster node when ``--node-gpus`` is not given (raised to the largest placement group)
DEFAULT_NODE_GPUS = 8


class LayoutError(FrontierConfigError):
    """verl's resource pools do not fill a set of identical nodes (what one SLURM job is)."""


@dataclass(frozen=True)
class ResourcePool:
    """One of the GPU resource pools verl's trainer creates: ``nnodes`` placement groups of ``n_gpus_per_node``."""

    name: str
    nnodes_key: str
    gpus_key: str
    nnodes: int
    gpus_per_node: int
    groups: tuple[int, ...]  # placement-group sizes, in the order verl creates them

    @property
    def gpus(self) -> int:
        return sum(self.groups)

    def describe(self) -> str:
        return f"{self.name} pool {self.nnodes_key} x {self.gpus_key} = {self.nnodes} x {self.gpus_per_node}"


@dataclass(frozen=True)
class JobLayout:
    """The job: ``nodes`` identical nodes with ``gpus_per_node`` GPUs each, and where Ray puts each group."""

    nodes: int
    gpus_per_node: int
    pools: tuple[ResourcePool, ...]
    placement: tuple[tuple[int, ...], ...]  # per node: the placement-group sizes Ray puts there

    @property
    def gpus(self) -> int:
        return sum(pool.gpus for pool in self.pools)

    def describe(self) -> str:
        pools = " + ".join(f"{p.name} {p.nnodes}x{p.gpus_per_node}" for p in self.pools)
        nodes = ", ".join("+".join(map(str, groups)) for groups in self.placement)
        return f"{pools} = {self.gpus} GPUs on {self.nodes} node(s) x {self.gpus_per_node} ({nodes})"


def _pool(config: Any, name: str, prefix: str, nnodes_key: str = "nnodes") -> ResourcePool:
    from verl_frontier.validation import config_error, select

    nkey, gkey = f"{prefix}.{nnodes_key}", f"{prefix}.n_gpus_per_node"
    nnodes, per_node = select(config, nkey), select(config, gkey)
    for key, value in ((nkey, nnodes), (gkey, per_node)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise config_error(key, f"must be a positive integer (the {name} resource pool)", value)
    return ResourcePool(name, nkey, gkey, nnodes, per_node, (per_node,) * nnodes)


def resource_pools(config: Any) -> list[ResourcePool]:
    """verl's GPU resource pools for this config, in the order its trainer creates their placement groups.

    As ``PPOTrainer._init_resource_pool_mgr`` (and the v0 ``TaskRunner.init_resource_pool_mgr``) build them:
    ``global_pool`` = ``trainer.nnodes`` x ``trainer.n_gpus_per_node`` (actor, rollout, ref, critic and a
    colocated reward model share it); ``reward_pool`` with ``reward.reward_model.enable_resource_pool``;
    ``teacher_pool`` with ``distillation.enabled``. Each pool is one ``STRICT_PACK`` placement group per entry:
    one node's worth. The ``separate_async`` v1 trainer adds a standalone rollout pool per inference replica.
    """
    from verl_frontier.validation import config_error, select

    pools = [_pool(config, "training", "trainer")]
    if select(config, "reward.reward_model.enable_resource_pool"):
        pools.append(_pool(config, "reward model", "reward.reward_model"))
    if select(config, "distillation.enabled"):
        pools.append(_pool(config, "teacher", "distillation"))
    use_v1 = select(config, "trainer.use_v1")
    if (use_v1 is None or use_v1) and select(config, "trainer.v1.trainer_mode") == "separate_async":
        key = "actor_rollout_ref.rollout"
        if select(config, f"{key}.disaggregation.enabled"):
            raise config_error(
                f"{key}.disaggregation.enabled", "the launcher cannot size a disaggregated standalone rollout", True
            )
        rollout = _pool(config, "standalone rollout", key)
        world = 1
        for dim in ("tensor_model_parallel_size", "data_parallel_size", "pipeline_model_parallel_size"):
            world *= int(select(config, f"{key}.{dim}") or 1)
        per_node = min(rollout.gpus_per_node, world)  # RolloutReplica.gpus_per_replica_node
        if rollout.gpus % world or world % per_node:
            raise config_error(
                f"{key}.n_gpus_per_node",
                f"{rollout.describe()} does not split into inference replicas of {world} GPUs",
                rollout.gpus_per_node,
            )
        groups = (per_node,) * (world // per_node) * (rollout.gpus // world)
        pools.append(dataclasses.replace(rollout, groups=groups))
    return pools


def ray_placement(groups: list[int], nodes: int, gpus_per_node: int) -> list[list[int]] | None:
    """Where Ray puts the placement groups, created one after the other, on identical empty nodes; None: stuck.

    Ray's ``STRICT_PACK`` policy puts a group on the node whose free resources stay the largest share after
    it (``LeastResourceScorer``: the highest ``(available - requested) / available``); GPUs decide here.
    """
    free = [gpus_per_node] * nodes
    placed: list[list[int]] = [[] for _ in range(nodes)]
    for size in groups:
        fits = [i for i in range(nodes) if free[i] >= size]
        if not fits:
            return None
        best = max(fits, key=lambda i: ((free[i] - size) / free[i], -i))
        free[best] -= size
        placed[best].append(size)
    return placed


def job_layout(config: Any, node_gpus: int | None = None) -> JobLayout:
    """The smallest set of identical nodes verl's resource pools fill exactly; FrontierConfigError otherwise.

    SLURM gives every node of a job the same number of GPUs (``--gpus-per-node``), so the job is ``N`` nodes x
    ``G`` GPUs with ``N x G`` = the GPUs of all pools, ``N >= trainer.nnodes``, ``G <= node_gpus`` (default:
    8, or the largest placement group), and Ray, placing the groups in verl's order, must fill every node.
    The largest such ``G`` (the fewest nodes) wins.
    """
    pools = resource_pools(config)
    groups = [size for pool in pools for size in pool.groups]
    total, largest = sum(groups), max(groups)
    cap = node_gpus or max(DEFAULT_NODE_GPUS, largest)
    keys = " + ".join(pool.describe() for pool in pools)
    if largest > cap:
        big = next(pool for pool in pools if max(pool.groups) == largest)
        message = f"{largest} GPUs on one node, but a node has {cap} (--node-gpus)"
        raise LayoutError(f"{big.gpus_key}: {message}")
    train_nodes = len(pools[0].groups)
    for per_node in range(min(cap, total), largest - 1, -1):
        if total % per_node or total // per_node < train_nodes:
            continue
        placement = ray_placement(groups, total // per_node, per_node)
        if placement is not None:
            return JobLayout(total // per_node, per_node, tuple(pools), tuple(tuple(p) for p in placement))
    raise LayoutError(
        f"{keys}: {total} GPUs do not fill identical nodes of at most {cap} GPUs (SLURM gives every node of a job "
        "the same number; Ray puts each placement group on the emptiest node): change these keys or --node-gpus"
    )


# ---------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------


def _has_override(overrides: list[str], key: str) -> bool:
    pattern = re.compile(rf"^[+~]{{0,2}}{re.escape(key)}\s*=")
    return any(pattern.match(o) for o in overrides)


def _hydra_value(value: str) -> str:
    """Quote a string for a Hydra override when it has characters Hydra's grammar would parse."""
    if re.fullmatch(r"[A-Za-z0-9_./:@-]*", value) and value:
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _logger_list(value: Any) -> list[str]:
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def plan_launch(
    recipe: str,
    overrides: list[str] | None = None,
    options: LaunchOptions | None = None,
    config_name: str | None = None,
    validate: bool = True,
    launch_id: str | None = None,
) -> LaunchPlan:
    """Compose and check everything; raises FrontierConfigError / RecipeError (one line naming the key)."""
    from verl_frontier import recipes as rc
    from verl_frontier.validation import select, validate_frontier_config

    options = options or LaunchOptions()
    if options.mode not in MODES:
        raise FrontierConfigError(f"--mode: must be one of {', '.join(MODES)} (got {options.mode!r})")
    spec = rc.get_recipe(recipe)
    options = merge_defaults(options, recipe_launch_defaults(spec.path))
    user = list(overrides or [])
    cpu = CPU_SWITCH in user
    sizes = []
    if options.nodes is not None:
        sizes.append(f"trainer.nnodes={options.nodes}")
    if options.gpus_per_node is not None:
        sizes.append(f"trainer.n_gpus_per_node={options.gpus_per_node}")
    import verl  # noqa: F401 - loads the verl.plugins entry points (resolvers, schemas, checks)

    config = rc.compose_recipe(spec, [*user, *sizes], config_name=config_name)
    config_name = (config_name or spec.default_config).removesuffix(".yaml")
    rc.resolve_all(config)
    if options.mode == "local" and int(config.trainer.nnodes) > 1:
        raise FrontierConfigError(f"trainer.nnodes: {config.trainer.nnodes} nodes need --mode slurm or --mode ray")
    if validate:
        validate_frontier_config(config)
        if options.mode == "slurm":
            check_partition(options.partition)
    layout = None
    if options.mode == "local":  # one machine: it needs the GPUs of every pool
        nodes, per_node = 1, sum(pool.gpus for pool in resource_pools(config))
    else:
        try:
            layout = job_layout(config, options.node_gpus)
        except LayoutError:
            if options.mode == "slurm":
                raise
            # a running Ray cluster: its nodes need not be identical; wait for the training nodes at least
            nodes, per_node = int(config.trainer.nnodes), int(config.trainer.n_gpus_per_node)
        else:
            nodes, per_node = layout.nodes, layout.gpus_per_node

    run_dir = Path(options.run_dir or Path("runs") / config_name).expanduser().resolve()
    launch_id = launch_id or time.strftime("%Y%m%d-%H%M%S")
    launch_dir = run_dir / f"{launch_id}-{options.mode}"
    checkpoint_dir = Path(select(config, "trainer.default_local_dir")).expanduser().resolve()
    ours = []
    if not _has_override(user, "trainer.default_local_dir"):
        checkpoint_dir = run_dir / "checkpoints"
        ours.append(f"trainer.default_local_dir={_hydra_value(str(checkpoint_dir))}")
    loggers = _logger_list(select(config, "trainer.logger"))
    if "file" not in loggers:
        ours.append(f"trainer.logger=[{','.join([*loggers, 'file'])}]")
    metrics_path = launch_dir / "metrics.jsonl"

    env = {k: os.environ[k] for k in FORWARD_ENV if os.environ.get(k)}
    env.update(options.env)
    env["VERL_FILE_LOGGER_PATH"] = str(metrics_path)
    if options.mode != "local":
        # the driver joins the running cluster: ray.init must get no resources. Ray workers of an existing
        # cluster do not inherit the driver's environment: hand the variables to them through runtime_env.
        ours += ["++ray_kwargs.ray_init.num_cpus=null", "++ray_kwargs.ray_init.num_gpus=null"]
        ours += [f"++ray_kwargs.ray_init.runtime_env.env_vars.{k}={_hydra_value(v)}" for k, v in sorted(env.items())]

    ray_cpus = ray_gpus = None
    if cpu:
        ray_gpus = per_node  # fake GPU slots per Ray node: its share of every resource pool
        ray_cpus = int(select(config, "ray_kwargs.ray_init.num_cpus") or 16)  # verl's bundles ask for several
    log_path = launch_dir / "job.out"
    plan = LaunchPlan(
        mode=options.mode,
        recipe=spec.name,
        config_name=config_name,
        recipe_dir=spec.path.resolve(),
        cpu=cpu,
        nodes=nodes,
        gpus_per_node=per_node,
        ray_num_cpus=ray_cpus,
        ray_num_gpus=ray_gpus,
        run_dir=run_dir,
        launch_dir=launch_dir,
        checkpoint_dir=checkpoint_dir,
        metrics_path=metrics_path,
        log_path=log_path,
        python=options.python or sys.executable,
        trainer_overrides=[*ours, *sizes, *user],
        env=env,
        options=options,
        layout=layout,
    )
    return plan


# ---------------------------------------------------------------------------
# modes
# ---------------------------------------------------------------------------


def run_local(plan: LaunchPlan) -> int:
    """``frontier check --quiet`` then verl's trainer in this machine's foreground; returns its exit code."""
    plan.launch_dir.mkdir(parents=True, exist_ok=True)
    plan.write_record()
    env = {**os.environ, **plan.env}
    check = subprocess.run([plan.python, "-m", "verl_frontier.cli", "check", "--quiet"], env=env)
    if check.returncode != 0:
        return check.returncode
    with open(plan.log_path, "w") as log:
        proc = subprocess.Popen(plan.trainer_argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:  # tee: the terminal and <launch dir>/job.out
            sys.stdout.write(line)
            log.write(line)
        return proc.wait()


def render_sbatch(plan: LaunchPlan) -> str:
    """The job script: the packaged template with this launch's values filled in."""
    opts = plan.options
    sbatch = [
        f"--job-name={opts.job_name or plan.config_name}",
        f"--nodes={plan.nodes}",
        "--ntasks-per-node=1",
        f"--output={plan.log_path}",
    ]
    if not plan.cpu and plan.gpus_per_node > 0:
        sbatch.append(f"--gpus-per-node={plan.gpus_per_node}")
    if opts.cpus_per_node:
        sbatch.append(f"--cpus-per-task={opts.cpus_per_node}")
    for flag, value in (("partition", opts.partition), ("time", opts.time), ("account", opts.account)):
        if value:
            sbatch.append(f"--{flag}={value}")
    sbatch += opts.sbatch_args
    resources = []
    if plan.ray_num_cpus is not None:
        resources.append(f"--num-cpus {plan.ray_num_cpus}")
    if plan.ray_num_gpus is not None:
        resources.append(f"--num-gpus {plan.ray_num_gpus}")
    values = {
        "RECIPE": f"{plan.recipe} ({plan.config_name}.yaml)",
        "SBATCH": "\n".join(f"#SBATCH {shlex.quote(s)}" for s in sbatch),
        "SETUP": "\n".join(opts.setup) or "# (no setup lines: the environment sbatch was called from)",
        "EXPORTS": "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(plan.env.items())),
        "PYTHON": shlex.quote(plan.python),
        "RAY_RESOURCES": "".join(" " + r for r in resources),
        "TRAINER": " ".join(['"$PYTHON"', *(shlex.quote(a) for a in plan.trainer_argv[1:])]),
    }
    text = (Path(__file__).with_name("sbatch_template.sh")).read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text


def submit_slurm(plan: LaunchPlan) -> str:
    """Write ``<launch dir>/job.sbatch`` and submit it; returns the SLURM job id."""
    if not shutil.which("sbatch"):
        raise FrontierConfigError("--mode slurm: sbatch not found; is SLURM installed here?")
    plan.launch_dir.mkdir(parents=True, exist_ok=True)
    plan.script_path = plan.launch_dir / "job.sbatch"
    plan.script_path.write_text(render_sbatch(plan))
    plan.script_path.chmod(0o755)
    proc = subprocess.run(
        ["sbatch", "--parsable", str(plan.script_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=plan.launch_dir,
    )
    if proc.returncode != 0:
        raise FrontierConfigError(f"sbatch failed: {' '.join(proc.stderr.split())}")
    plan.job_id = proc.stdout.strip().split(";")[0]
    plan.write_record()
    return plan.job_id


def slurm_job_state(job_id: str) -> str | None:
    """``JobState`` from ``scontrol show job`` (``sacct`` needs slurmdbd); None once SLURM forgot the job."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True, timeout=60)
    match = re.search(r"\bJobState=(\S+)", proc.stdout)
    return match.group(1) if match else None


def wait_slurm(job_id: str, timeout: float | None = None, poll: float = 3.0) -> str:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = slurm_job_state(job_id)
        if state is None or state in TERMINAL_SLURM_STATES:
            return state or "UNKNOWN"
        if deadline is not None and time.monotonic() > deadline:
            return state
        time.sleep(poll)


def ray_entrypoint(plan: LaunchPlan) -> str:
    """Shell command the Ray job runs on the head node: registration check on every node, then the trainer.

    The job's variables are exported here, not given as the job's runtime_env: Ray refuses to merge a job
    runtime_env with the one verl's ``ray.init`` passes when both set the same variable.
    """
    env = {**plan.env, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"), "PYTHONUNBUFFERED": "1"}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    check = [plan.python, "-m", "verl_frontier.launch.node_check", "--nodes", str(plan.nodes), "--timeout", "300"]
    return f"export {exports} && {shlex.join(check)} && {shlex.join(plan.trainer_argv)}"


def submit_ray(plan: LaunchPlan) -> str:
    """Submit to a running Ray cluster through the Ray Jobs API; returns the submission id."""
    from ray.job_submission import JobSubmissionClient

    address = plan.options.ray_address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise FrontierConfigError("--ray-address: give the cluster's dashboard address, e.g. http://head:8265")
    plan.launch_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # as the nodes `raynode` starts; export it to override
    client = JobSubmissionClient(address)
    plan.job_id = client.submit_job(
        entrypoint=ray_entrypoint(plan), submission_id=f"frontier-{plan.config_name}-{plan.launch_dir.name}"
    )
    plan.write_record()
    return plan.job_id


def wait_ray(plan: LaunchPlan, timeout: float | None = None, poll: float = 3.0) -> str:
    """Wait for the Ray job; its log goes to ``<launch dir>/job.out``. Returns SUCCEEDED/FAILED/STOPPED/..."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    client = JobSubmissionClient(plan.options.ray_address or os.environ.get("RAY_ADDRESS"))
    deadline = None if timeout is None else time.monotonic() + timeout
    terminal = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
    while True:
        status = client.get_job_status(plan.job_id)
        if status in terminal or (deadline is not None and time.monotonic() > deadline):
            break
        time.sleep(poll)
    plan.log_path.write_text(client.get_job_logs(plan.job_id))
    return str(status.value if hasattr(status, "value") else status)
