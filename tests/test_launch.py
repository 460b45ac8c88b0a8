"""``frontier launch`` without a cluster: option handling, world-size checks, the job script, the submission flow.

SLURM's client commands are replaced by small fake ``sinfo`` / ``sbatch`` scripts on PATH (they record their
arguments), so these tests show what would be submitted; tests/e2e/test_launch_e2e.py submits it for real.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from verl_frontier import recipes as rc
from verl_frontier.launch import core
from verl_frontier.launch.raynode import free_ports, ray_start_command
from verl_frontier.validation import FrontierConfigError

REPO = Path(__file__).resolve().parent.parent
TINY_CPU = ["+platform=cpu", "trainer.total_training_steps=2"]


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """Fake ``sinfo`` (partitions debug*, gpu) and ``sbatch`` (job 4242) first on PATH; returns the call log."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    scripts = {
        "sinfo": 'echo "$0 $*" >> {calls}; printf "debug*\\ngpu\\n"',
        "sbatch": 'echo "$0 $*" >> {calls}; echo "4242;cluster"',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body.format(calls=calls) + "\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


@pytest.fixture
def world_env(small_world_dir, monkeypatch):
    monkeypatch.setenv("FRONTIER_WORLD_DIR", str(small_world_dir))
    return small_world_dir


def _config(nnodes=1, per_node=1, batch=8, n=4, mini=8, sp=1):
    return OmegaConf.create(
        {
            "trainer": {"nnodes": nnodes, "n_gpus_per_node": per_node},
            "data": {"train_batch_size": batch},
            "actor_rollout_ref": {
                "rollout": {"n": n},
                "actor": {"ppo_mini_batch_size": mini, "ulysses_sequence_parallel_size": sp},
            },
        }
    )


# ---------------------------------------------------------------------------
# world size vs batch sizes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("nnodes", "per_node"), [(1, 1), (2, 1), (2, 4), (4, 8), (1, 32)])
def test_world_size_accepts_sizes_that_divide(nnodes, per_node):
    core.check_world_size(_config(nnodes, per_node, batch=64, n=4, mini=16))  # 256 and 64 samples


def test_world_size_names_train_batch_size():
    # 8 prompts x 4 samples = 32 responses over 3 ranks: 32 % 3 = 2
    with pytest.raises(FrontierConfigError, match=r"^data\.train_batch_size: 8 prompts x rollout\.n 4 = 32 .*3 ranks"):
        core.check_world_size(_config(nnodes=3, per_node=1))


def test_world_size_names_mini_batch():
    # 32 responses split over 16 ranks, but a mini-batch of 1 x 4 = 4 cannot feed 16 data-parallel ranks
    with pytest.raises(FrontierConfigError, match=r"^actor_rollout_ref\.actor\.ppo_mini_batch_size: 1 x .* = 4 "):
        core.check_world_size(_config(nnodes=2, per_node=8, batch=8, n=4, mini=1))
    # sequence parallelism shrinks the data-parallel group: 16 ranks / sp 4 = 4 dp ranks, 4 % 4 == 0
    core.check_world_size(_config(nnodes=2, per_node=8, batch=8, n=4, mini=1, sp=4))


def test_world_size_names_micro_batches():
    # 8 x 4 = 32 samples over 2 ranks = 16 each: a micro-batch of 32 does not fit a whole number of times
    for key in ("rollout.log_prob_micro_batch_size_per_gpu", "ref.log_prob_micro_batch_size_per_gpu"):
        config = _config(nnodes=2)
        OmegaConf.update(config, f"actor_rollout_ref.{key}", 32, force_add=True)
        with pytest.raises(
            FrontierConfigError, match=rf"^actor_rollout_ref\.{re.escape(key)}: each of the 2 .* gets 16 "
        ):
            core.check_world_size(config)
        OmegaConf.update(config, f"actor_rollout_ref.{key}", 8)
        core.check_world_size(config)
    config = _config(nnodes=2, mini=8)  # mini-batch 8 x 4 = 32 over 2 ranks = 16 per rank
    OmegaConf.update(config, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", 32, force_add=True)
    with pytest.raises(
        FrontierConfigError, match=r"^actor_rollout_ref\.actor\.ppo_micro_batch_size_per_gpu: .* gets 16 "
    ):
        core.check_world_size(config)


@pytest.mark.parametrize("key", ["trainer.nnodes", "trainer.n_gpus_per_node"])
def test_world_size_rejects_non_positive_counts(key):
    config = _config()
    OmegaConf.update(config, key, 0)
    with pytest.raises(FrontierConfigError, match=rf"^{re.escape(key)}: must be a positive integer"):
        core.check_world_size(config)


KNOWN_BAD = {}
ALL_CONFIGS = [
    pytest.param(r, c, id=f"{r.name}/{c}", marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BAD[(r.name, c)])]
                 if (r.name, c) in KNOWN_BAD else [])
    for r in rc.list_recipes(REPO / "recipes") for c in r.configs
]  # fmt: skip


@pytest.mark.parametrize(("recipe", "config_name"), ALL_CONFIGS)
def test_recipe_config_fits_its_own_world_size(recipe, config_name, data_overrides, world_env):
    config = rc.compose_recipe(recipe, [] if config_name.endswith("_tiny") else data_overrides, config_name=config_name)
    core.check_world_size(config)


# ---------------------------------------------------------------------------
# frontier validate with launch options
# ---------------------------------------------------------------------------


def test_validate_rejects_nodes_the_batch_cannot_split_over(cli, data_overrides):
    # grpo_baseline: 64 prompts x n=5 = 320 responses; 3 nodes x 1 GPU = 3 ranks does not divide 320
    result = cli("validate", "grpo_baseline", *data_overrides, "--nodes", "3", "--gpus-per-node", "1", "--no-verl")
    assert result.exit_code == 2
    assert "data.train_batch_size: 64 prompts x rollout.n 5 = 320" in result.stderr
    # 2 x 2 = 4 ranks: 80 samples each (log-prob micro-batch 16), PPO mini-batch 160 / 4 = 40 each (micro 8)
    ok = cli("validate", "grpo_baseline", *data_overrides, "--nodes", "2", "--gpus-per-node", "2", "--no-verl")
    assert ok.exit_code == 0, ok.output
    assert "nodes=2x2" in ok.stdout


def test_validate_checks_partition_with_sinfo(cli, data_overrides, fake_slurm):
    bad = cli("validate", "grpo_baseline", *data_overrides, "--partition", "nope", "--no-verl")
    assert bad.exit_code == 2
    assert "partition 'nope' is not listed by sinfo (available: debug, gpu)" in bad.stderr
    good = cli("validate", "grpo_baseline", *data_overrides, "--partition", "gpu", "--no-verl")
    assert good.exit_code == 0, good.output
    assert "partition" in good.stdout


def test_partition_check_without_sinfo(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FrontierConfigError, match="sinfo not found"):
        core.check_partition("debug")
    core.check_partition(None)  # no partition asked for: nothing to check


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------


def test_parse_env(monkeypatch):
    monkeypatch.setenv("FROM_HERE", "x y")
    assert core.parse_env(["A=1", "B=a=b", "FROM_HERE"]) == {"A": "1", "B": "a=b", "FROM_HERE": "x y"}
    with pytest.raises(FrontierConfigError, match="--env"):
        core.parse_env(["1BAD=x"])
    monkeypatch.delenv("FROM_HERE")
    with pytest.raises(FrontierConfigError, match="FROM_HERE is not set"):
        core.parse_env(["FROM_HERE"])


def test_launch_yaml_defaults(tmp_path):
    (tmp_path / "launch.yaml").write_text(
        "partition: gpu\ntime: '04:00:00'\nenv: {A: '1', B: '2'}\nsetup: module load x\n"
    )
    defaults = core.recipe_launch_defaults(tmp_path)
    user = core.LaunchOptions(time="01:00:00", env={"B": "user"})
    merged = core.merge_defaults(user, defaults)
    assert (merged.partition, merged.time) == ("gpu", "01:00:00")  # the user's option wins
    assert merged.env == {"A": "1", "B": "user"} and merged.setup == ["module load x"]
    (tmp_path / "launch.yaml").write_text("partiton: gpu\n")
    with pytest.raises(FrontierConfigError, match="unknown launch option 'partiton'"):
        core.recipe_launch_defaults(tmp_path)


# ---------------------------------------------------------------------------
# the plan and the job script
# ---------------------------------------------------------------------------


def test_plan_cpu_slurm(world_env, tmp_path):
    options = core.LaunchOptions(mode="slurm", run_dir=str(tmp_path / "run"), env={"EXTRA": "a b"})
    plan = core.plan_launch("grpo_baseline", TINY_CPU, options, config_name="grpo_baseline_tiny", launch_id="t1")
    assert plan.cpu and (plan.nodes, plan.gpus_per_node) == (1, 1)
    assert (plan.ray_num_gpus, plan.ray_num_cpus) == (1, 16)  # one fake slot per training rank; cpu.yaml's CPUs
    assert plan.launch_dir == tmp_path / "run" / "t1-slurm"
    assert plan.checkpoint_dir == tmp_path / "run" / "checkpoints"
    assert plan.metrics_path == plan.launch_dir / "metrics.jsonl"
    assert plan.env["FRONTIER_WORLD_DIR"] == str(world_env) and plan.env["VERL_FILE_LOGGER_PATH"] == str(
        plan.metrics_path
    )
    ov = plan.trainer_overrides
    assert f"trainer.default_local_dir={plan.checkpoint_dir}" in ov
    assert "trainer.logger=[console,file]" in ov
    assert "++ray_kwargs.ray_init.num_cpus=null" in ov and "++ray_kwargs.ray_init.num_gpus=null" in ov
    assert f"++ray_kwargs.ray_init.runtime_env.env_vars.FRONTIER_WORLD_DIR={world_env}" in ov
    assert "++ray_kwargs.ray_init.runtime_env.env_vars.EXTRA='a b'" in ov
    assert ov[-2:] == TINY_CPU  # the user's overrides come last
    # the trainer's own config composition accepts every override the launcher adds
    config = rc.compose_recipe("grpo_baseline", ov, config_name="grpo_baseline_tiny")
    assert config.trainer.default_local_dir == str(plan.checkpoint_dir)
    assert list(config.trainer.logger) == ["console", "file"]
    assert config.ray_kwargs.ray_init.num_gpus is None and config.ray_kwargs.ray_init.num_cpus is None
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.EXTRA == "a b"
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM == "cpu"


def test_plan_keeps_user_checkpoint_dir_and_local_mode_is_single_node(world_env, tmp_path):
    options = core.LaunchOptions(run_dir=str(tmp_path))
    plan = core.plan_launch(
        "grpo_baseline", [*TINY_CPU, f"trainer.default_local_dir={tmp_path}/mine"], options, "grpo_baseline_tiny"
    )
    assert plan.checkpoint_dir == tmp_path / "mine"
    assert not any(o.startswith("++ray_kwargs") for o in plan.trainer_overrides)  # local: verl starts its own Ray
    with pytest.raises(FrontierConfigError, match="trainer.nnodes: 2 nodes need --mode slurm or --mode ray"):
        core.plan_launch("grpo_baseline", TINY_CPU, core.LaunchOptions(nodes=2), "grpo_baseline_tiny")


def test_plan_rejects_nodes_before_anything_is_written(world_env, tmp_path):
    options = core.LaunchOptions(mode="slurm", nodes=3, run_dir=str(tmp_path / "run"))
    with pytest.raises(FrontierConfigError, match=r"^data\.train_batch_size: 8 prompts x rollout\.n 4 = 32"):
        core.plan_launch("grpo_baseline", TINY_CPU, options, "grpo_baseline_tiny")
    assert not (tmp_path / "run").exists()


def test_distillation_fake_gpus_include_the_teacher(world_env, tmp_path):
    plan = core.plan_launch(
        "opd_uniform", ["+platform=cpu"], core.LaunchOptions(mode="slurm", run_dir=str(tmp_path)), "opd_uniform_tiny"
    )
    config = rc.compose_recipe("opd_uniform", ["+platform=cpu"], config_name="opd_uniform_tiny")
    expected = config.trainer.n_gpus_per_node + config.distillation.n_gpus_per_node * config.distillation.nnodes
    assert config.distillation.enabled and plan.ray_num_gpus == expected


def _script(plan) -> str:
    text = core.render_sbatch(plan)
    proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return text


def test_sbatch_script_cpu_mode(world_env, tmp_path):
    options = core.LaunchOptions(
        mode="slurm",
        nodes=2,
        partition="debug",
        time="00:30:00",
        account="proj1",
        setup=["source /opt/venv/bin/activate"],
        sbatch_args=["--exclusive"],
        run_dir=str(tmp_path),
    )
    plan = core.plan_launch("grpo_baseline", TINY_CPU, options, "grpo_baseline_tiny", validate=False)
    text = _script(plan)
    headers = re.findall(r"^#SBATCH (.+)$", text, flags=re.MULTILINE)
    assert headers == [
        "--job-name=grpo_baseline_tiny",
        "--nodes=2",
        "--ntasks-per-node=1",
        f"--output={plan.log_path}",
        "--partition=debug",
        "--time=00:30:00",
        "--account=proj1",
        "--exclusive",
    ]  # CPU mode asks SLURM for no GPU
    assert text.index("source /opt/venv/bin/activate") < text.index("\nmapfile")
    assert f"export FRONTIER_WORLD_DIR={world_env}" in text
    assert "--num-cpus 16 --num-gpus 1" in text  # each of the 2 Ray nodes gets one fake GPU slot
    assert "ray stop" not in text.replace("never `ray stop`", "")
    assert "@@" not in text
    last = shlex.split(text.strip().splitlines()[-1])
    assert last[:6] == ["srun", "--nodes=1", "--ntasks=1", "--overlap", "-w", "$HEAD"] or last[0] == "on"
    assert last[last.index("$PYTHON") + 1 :] == plan.trainer_argv[1:]
    assert "trainer.nnodes=2" in plan.trainer_argv


def test_sbatch_script_gpu_mode(data_overrides, tmp_path):
    options = core.LaunchOptions(mode="slurm", nodes=2, gpus_per_node=2, cpus_per_node=32, run_dir=str(tmp_path))
    plan = core.plan_launch("grpo_baseline", data_overrides, options)
    text = _script(plan)
    assert "#SBATCH --gpus-per-node=2" in text and "#SBATCH --cpus-per-task=32" in text
    assert "#SBATCH --partition" not in text
    assert (plan.ray_num_cpus, plan.ray_num_gpus) == (None, None)  # Ray takes what SLURM gave each step
    assert '--temp-dir "$RAY_TMP" &' in text.replace(" \\\n    ", " ")


# ---------------------------------------------------------------------------
# the job's size: every GPU resource pool verl creates
# ---------------------------------------------------------------------------

FULL_SIZE = [pytest.param(r, id=r.name) for r in rc.list_recipes(REPO / "recipes")]
#: what each full-size recipe's comments and README describe (nodes, GPUs per node), 8-GPU nodes
DESCRIBED = {
    "paced_distill": (2, 8),  # one training node + one teacher node
    "paced_self_distill": (2, 8),
    "paced_two_stage": (2, 8),
    "kd_uniform": (1, 8),  # 6 training ranks + 2 teacher GPUs on one node
    "opd_uniform": (1, 8),
    "slm_compress": (1, 8),
    "essence": (1, 8),  # 4 + 4
}


def _placement_groups_verl_creates(config) -> list[int]:
    """Read the keys verl 0.9.1's ``_init_resource_pool_mgr`` reads, one by one, without the launcher's code."""
    plain = OmegaConf.to_container(config, resolve=False)
    trainer, reward, distill = plain["trainer"], plain["reward"]["reward_model"], plain.get("distillation") or {}
    assert trainer.get("v1", {}).get("trainer_mode", "sync") != "separate_async"  # no recipe uses it
    groups = []
    for _ in range(trainer["nnodes"]):
        groups.append(trainer["n_gpus_per_node"])  # global_pool: actor, rollout, ref (and a colocated reward model)
    if reward["enable_resource_pool"]:
        for _ in range(reward["nnodes"]):
            groups.append(reward["n_gpus_per_node"])
    if distill.get("enabled"):
        for _ in range(distill["nnodes"]):
            groups.append(distill["n_gpus_per_node"])
    return groups


def _fills_exactly(groups: list[int], nodes: int, per_node: int) -> bool:
    """Brute force: some assignment of the placement groups (each on one node) fills every node exactly."""
    import itertools

    for assignment in itertools.product(range(nodes), repeat=len(groups)):
        load = [0] * nodes
        for group, node in zip(groups, assignment):
            load[node] += group
        if all(x == per_node for x in load):
            return True
    return False


@pytest.mark.parametrize("recipe", FULL_SIZE)
def test_job_requests_the_gpus_verl_allocates(recipe, tmp_path):
    options = core.LaunchOptions(mode="slurm", run_dir=str(tmp_path))
    plan = core.plan_launch(recipe.name, [], options, validate=False)
    text = _script(plan)
    nodes = int(re.search(r"^#SBATCH --nodes=(\d+)$", text, flags=re.MULTILINE).group(1))
    per_node = int(re.search(r"^#SBATCH --gpus-per-node=(\d+)$", text, flags=re.MULTILINE).group(1))
    config = rc.compose_recipe(recipe.name, [])
    groups = _placement_groups_verl_creates(config)
    assert nodes * per_node == sum(groups), plan.layout.describe()
    assert nodes >= config.trainer.nnodes and max(groups) <= per_node <= 8
    assert _fills_exactly(groups, nodes, per_node)
    assert (plan.nodes, plan.gpus_per_node) == (nodes, per_node)
    if recipe.name in DESCRIBED:
        assert (nodes, per_node) == DESCRIBED[recipe.name]
    # one Ray node per SLURM node, and the check before the trainer waits for all of them
    assert '"${NODES[@]:1}"' in text and '--nodes "$SLURM_NNODES"' in text
    # the trainer gets the recipe's training layout, not the job's size
    assert not any(o.startswith(("trainer.nnodes=", "trainer.n_gpus_per_node=")) for o in plan.trainer_overrides)


def test_paced_dry_run_asks_for_the_teacher_node(cli, tmp_path):
    result = cli(
        "launch", "paced_distill", "--mode", "slurm", "--dry-run", "--no-validate", "--json",
        "--run-dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "#SBATCH --nodes=2\n" in result.stderr and "#SBATCH --gpus-per-node=8\n" in result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert (record["nodes"], record["gpus_per_node"]) == (2, 8)
    assert record["layout"] == "training 1x8 + teacher 1x8 = 16 GPUs on 2 node(s) x 8 (8, 8)"


def test_layout_slurm_cannot_express_fails_before_sbatch(cli, fake_slurm, tmp_path):
    # 2 x 6 training ranks + a 2-GPU teacher: 14 GPUs are not N identical nodes (8 + 6)
    result = cli(
        "launch", "kd_uniform", "--mode", "slurm", "--nodes", "2", "--no-validate",
        "--run-dir", str(tmp_path / "run"), "distillation.nnodes=1",
    )  # fmt: skip
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: training pool trainer.nnodes x trainer.n_gpus_per_node")
    assert "teacher pool distillation.nnodes x distillation.n_gpus_per_node = 1 x 2: 14 GPUs" in lines[0]
    assert not fake_slurm.exists() or "sbatch" not in fake_slurm.read_text()
    assert not (tmp_path / "run").exists()
    # a teacher replica per training node fills both nodes: 6 + 2 each
    ok = cli(
        "launch", "kd_uniform", "--mode", "slurm", "--nodes", "2", "--no-validate", "--dry-run", "--json",
        "--run-dir", str(tmp_path / "run"),
        "distillation.nnodes=2", "distillation.teacher_models.teacher_model.num_replicas=2",
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "#SBATCH --nodes=2\n" in ok.stderr and "#SBATCH --gpus-per-node=8\n" in ok.stderr
    small = cli("launch", "paced_distill", "--mode", "slurm", "--node-gpus", "4", "--no-validate", "--dry-run")
    assert small.exit_code == 2
    assert "trainer.n_gpus_per_node: 8 GPUs on one node, but a node has 4 (--node-gpus)" in small.stderr


def _layout_config(trainer=(1, 8), teacher=None, reward=None, **extra):
    config = {"trainer": {"nnodes": trainer[0], "n_gpus_per_node": trainer[1]}}
    if teacher:
        config["distillation"] = {"enabled": True, "nnodes": teacher[0], "n_gpus_per_node": teacher[1]}
    if reward:
        config["reward"] = {
            "reward_model": {"enable_resource_pool": True, "nnodes": reward[0], "n_gpus_per_node": reward[1]}
        }
    return OmegaConf.merge(OmegaConf.create(config), OmegaConf.create(extra))


@pytest.mark.parametrize(
    ("config", "node_gpus", "expected"),
    [
        (_layout_config((1, 4)), None, (1, 4, [[4]])),
        (_layout_config((2, 1)), None, (2, 1, [[1], [1]])),  # trainer.nnodes is a minimum
        (_layout_config((1, 6), teacher=(1, 2)), None, (1, 8, [[6, 2]])),
        (_layout_config((1, 8), teacher=(1, 8)), None, (2, 8, [[8], [8]])),
        (_layout_config((1, 4), teacher=(1, 4)), None, (1, 8, [[4, 4]])),
        (_layout_config((1, 4), teacher=(1, 4)), 4, (2, 4, [[4], [4]])),
        (_layout_config((2, 6), teacher=(2, 2)), None, (2, 8, [[6, 2], [6, 2]])),
        (_layout_config((1, 4), reward=(1, 2), teacher=(1, 2)), None, (1, 8, [[4, 2, 2]])),
        (_layout_config((1, 16), teacher=(1, 16)), None, (2, 16, [[16], [16]])),
        (
            _layout_config(
                (1, 4),
                actor_rollout_ref={"rollout": {"nnodes": 1, "n_gpus_per_node": 4, "tensor_model_parallel_size": 2}},
            ),
            None,
            (1, 4, [[4]]),  # trainer_mode sync: the rollout's own nnodes do not count
        ),
        (
            OmegaConf.merge(
                _layout_config((1, 4)),
                {"trainer": {"v1": {"trainer_mode": "separate_async"}}},
                {
                    "actor_rollout_ref": {
                        "rollout": {"nnodes": 1, "n_gpus_per_node": 4, "tensor_model_parallel_size": 2}
                    }
                },
            ),
            None,
            (1, 8, [[4, 2, 2]]),  # standalone rollout: one placement group per TP-2 replica
        ),
    ],
)
def test_job_layout(config, node_gpus, expected):
    layout = core.job_layout(config, node_gpus)
    assert (layout.nodes, layout.gpus_per_node, [list(n) for n in layout.placement]) == expected


@pytest.mark.parametrize(
    ("config", "node_gpus", "match"),
    [
        # the teacher would need a fraction of a third node: 8 + 8 + 2
        (
            _layout_config((2, 8), teacher=(1, 2)),
            None,
            r"^training pool .* = 2 x 8 \+ teacher pool .* = 1 x 2: 18 GPUs",
        ),
        # 16 GPUs fit two 8-GPU nodes, but Ray puts the training groups on both (emptiest node): no room for 8
        (_layout_config((2, 4), teacher=(1, 8)), None, r"16 GPUs do not fill identical nodes of at most 8 GPUs"),
        (_layout_config((1, 8)), 4, r"^trainer\.n_gpus_per_node: 8 GPUs on one node, but a node has 4"),
        (_layout_config((1, 8), teacher=(0, 8)), None, r"^distillation\.nnodes: must be a positive integer"),
        (_layout_config((1, 8), reward=(1, 0)), None, r"^reward\.reward_model\.n_gpus_per_node: must be a positive"),
    ],
)
def test_job_layout_rejects(config, node_gpus, match):
    with pytest.raises(FrontierConfigError, match=match):
        core.job_layout(config, node_gpus)


def test_ray_placement_follows_rays_emptiest_node_rule():
    assert core.ray_placement([4, 4, 8], 2, 8) is None  # 4 -> node 0, 4 -> node 1 (emptier), 8 -> nowhere
    assert core.ray_placement([8, 4, 4], 2, 8) == [[8], [4, 4]]
    assert core.ray_placement([6, 6, 2, 2], 2, 8) == [[6, 2], [6, 2]]


def test_ray_mode_waits_for_the_job_nodes(world_env, tmp_path):
    options = core.LaunchOptions(mode="ray", run_dir=str(tmp_path), ray_address="http://h:8265")
    plan = core.plan_launch("paced_distill", [], options, validate=False)
    assert "--nodes 2 " in core.ray_entrypoint(plan)
    # a running cluster need not be identical nodes: an uneven layout waits for the training nodes
    plan = core.plan_launch(
        "kd_uniform", ["distillation.nnodes=1"], dataclasses.replace(options, nodes=2), validate=False
    )
    assert plan.layout is None and "--nodes 2 " in core.ray_entrypoint(plan)


# ---------------------------------------------------------------------------
# frontier launch --mode slurm against fake sinfo/sbatch
# ---------------------------------------------------------------------------


def test_launch_submits_the_script_it_wrote(cli, world_env, fake_slurm, tmp_path):
    result = cli(
        "launch", "grpo_baseline", "-c", "grpo_baseline_tiny", "--mode", "slurm", "--partition", "debug",
        "--run-dir", str(tmp_path / "run"), "--json", *TINY_CPU,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["job_id"] == "4242"
    script = Path(record["script_path"])
    assert script.is_file() and script.parent == Path(record["launch_dir"])
    assert json.loads((script.parent / "launch.json").read_text()) == record
    calls = fake_slurm.read_text().splitlines()
    assert calls[0].endswith("sinfo -h -o %P")
    assert calls[1].endswith(f"sbatch --parsable {script}")
    assert record["checkpoint_dir"] == str(tmp_path / "run" / "checkpoints")


def test_launch_unknown_partition_fails_before_sbatch(cli, world_env, fake_slurm, tmp_path):
    result = cli(
        "launch", "grpo_baseline", "-c", "grpo_baseline_tiny", "--mode", "slurm", "--partition", "gpux",
        "--run-dir", str(tmp_path / "run"), *TINY_CPU,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "partition 'gpux' is not listed by sinfo (available: debug, gpu)" in result.stderr
    assert not any("sbatch" in line for line in fake_slurm.read_text().splitlines())
    assert not (tmp_path / "run").exists()


def test_launch_bad_mode(cli):
    result = cli("launch", "grpo_baseline", "--mode", "k8s")
    assert result.exit_code == 2 and "--mode: must be one of local, slurm, ray" in result.stderr


def test_ray_entrypoint_checks_every_node_first(world_env, tmp_path):
    options = core.LaunchOptions(mode="ray", nodes=2, run_dir=str(tmp_path), ray_address="http://h:8265")
    micro = [
        f"actor_rollout_ref.{k}_micro_batch_size_per_gpu=8" for k in ("actor.ppo", "rollout.log_prob", "ref.log_prob")
    ]
    plan = core.plan_launch("grpo_baseline", [*TINY_CPU, *micro], options, "grpo_baseline_tiny")
    exports, check, trainer = core.ray_entrypoint(plan).split(" && ")
    assert f"FRONTIER_WORLD_DIR={world_env}" in shlex.split(exports) and shlex.split(exports)[0] == "export"
    assert f"VERL_FILE_LOGGER_PATH={plan.metrics_path}" in shlex.split(exports)
    assert shlex.split(check)[1:] == ["-m", "verl_frontier.launch.node_check", "--nodes", "2", "--timeout", "300"]
    assert shlex.split(trainer) == plan.trainer_argv


# ---------------------------------------------------------------------------
# Ray node helper
# ---------------------------------------------------------------------------


def test_free_ports_are_distinct():
    ports = free_ports(8)
    assert len(set(ports)) == 8 and all(1024 < p < 65536 for p in ports)


def test_ray_start_command(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "12")
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "a100:8")
    head = ray_start_command(head=True, port=6380, temp_dir="/tmp/r1", dashboard_port=8265, ray_executable="ray")
    assert head[:4] == ["ray", "start", "--block", "--disable-usage-stats"]
    assert "--head" in head and "--port=6380" in head and "--dashboard-port=8265" in head
    assert "--num-cpus=12" in head and "--num-gpus=8" in head and "--temp-dir=/tmp/r1" in head
    worker = ray_start_command(head=False, address="10.0.0.1:6380", num_cpus=16, num_gpus=1, ray_executable="ray")
    assert "--address=10.0.0.1:6380" in worker and "--head" not in worker
    assert "--num-cpus=16" in worker and "--num-gpus=1" in worker and "--include-dashboard=false" not in worker
    # every per-node service on its own port, so two nodes fit on one machine
    flags = ("node-manager", "object-manager", "dashboard-agent-listen", "dashboard-agent-grpc", "runtime-env-agent")
    ports = [int(a.split("=")[1]) for a in worker if a.split("=")[0] in {f"--{f}-port" for f in flags}]
    assert len(ports) == len(flags) == len(set(ports))
    with pytest.raises(ValueError):
        ray_start_command(head=True, address="x:1")


# ---------------------------------------------------------------------------
# the recipe folders: thin calls of the shared launcher
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", [pytest.param(r, id=r.name) for r in rc.list_recipes(REPO / "recipes")])
def test_recipe_scripts_call_the_shared_launcher(recipe):
    for script, mode in (("run.sh", "local"), ("slurm.sh", "slurm")):
        body = (recipe.path / script).read_text()
        lines = [line for line in body.splitlines() if line.strip() and not line.startswith("#")]
        assert len(lines) <= 2, f"{recipe.name}/{script} should be a thin call of `frontier launch`"
        assert lines[-1].startswith("exec frontier launch ") and f"--mode {mode}" in lines[-1]
        assert f'CONFIG_NAME="${{CONFIG_NAME:-{recipe.name}}}"' in body
