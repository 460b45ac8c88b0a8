"""evaluate() on the small world, checkpoint resolution and verl FSDP checkpoint merging."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from verl_frontier.evaluation.checkpoint import MERGED_DIR_NAME, is_hf_dir, resolve_checkpoint
from verl_frontier.tinyworld.builder import build


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    out = tmp_path_factory.getbasetemp() / "tinyworld-small-seed0"
    build(out=out, size="small", seed=0, quiet=True)
    return out


def test_evaluate_on_small_world(small_world, tmp_path):
    from verl_frontier.evaluation import evaluate

    res = evaluate(
        small_world / "student", small_world / "data/test.parquet", n=4, max_new_tokens=48, limit=12, out_dir=tmp_path
    )
    assert res["num_problems"] == 12
    assert 0.0 <= res["greedy_accuracy"] <= 1.0
    assert len(res["greedy_scores"]) == 12 and sum(res["greedy_scores"]) / 12 == pytest.approx(res["greedy_accuracy"])
    assert list(res["pass_at_k"]) == ["1", "2", "3", "4"]
    assert len(res["sample_correct"]) == 12 and all(0 <= c <= 4 for c in res["sample_correct"])
    assert sum(res["sample_correct"]) / (12 * 4) == pytest.approx(res["pass_at_k"]["1"])  # pass@1 = mean rate
    p = [res["pass_at_k"][k] for k in "1234"]
    assert all(a <= b + 1e-12 for a, b in zip(p, p[1:]))
    assert res["mean_at_k"]["1"] == pytest.approx(res["pass_at_k"]["1"])
    assert 0 < res["greedy_mean_response_tokens"] <= 48
    assert set(res["by_data_source"]) == {"tinyworld/arith"}
    assert res["by_difficulty"]
    assert json.loads((tmp_path / "eval.json").read_text())["num_problems"] == 12
    assert (tmp_path / "pass_at_k.png").stat().st_size > 1000


def test_evaluate_is_seeded_and_accepts_custom_reward(small_world, tmp_path):
    from verl_frontier.evaluation import evaluate

    fn = tmp_path / "always.py"
    fn.write_text("def score(data_source, solution_str, ground_truth, extra_info=None, **kw):\n    return 1.0\n")
    a = evaluate(
        small_world / "student",
        small_world / "data/test.parquet",
        n=2,
        max_new_tokens=16,
        limit=6,
        greedy=False,
        seed=3,
    )
    b = evaluate(
        small_world / "student",
        small_world / "data/test.parquet",
        n=2,
        max_new_tokens=16,
        limit=6,
        greedy=False,
        seed=3,
    )
    assert a["pass_at_k"] == b["pass_at_k"] and a["sampled_mean_response_tokens"] == b["sampled_mean_response_tokens"]
    c = evaluate(
        small_world / "student", small_world / "data/test.parquet", n=2, max_new_tokens=8, limit=4, reward=f"{fn}:score"
    )
    assert c["greedy_accuracy"] == 1.0 and c["pass_at_k"]["2"] == 1.0


def test_eval_cli(small_world, tmp_path):
    import typer
    from typer.testing import CliRunner

    from verl_frontier.evaluation.cli import eval_command

    app = typer.Typer()
    app.command()(eval_command)
    r = CliRunner().invoke(
        app,
        [
            str(small_world / "teacher"),
            str(small_world / "data/test.parquet"),
            "--n",
            "2",
            "--max-new-tokens",
            "16",
            "--limit",
            "4",
            "--out",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "eval.json").exists()
    h = CliRunner().invoke(app, ["--help"])
    assert h.exit_code == 0 and "--k-max" in h.output, h.output


def test_resolve_rejects_unknown(tmp_path):
    with pytest.raises(FileNotFoundError):
        resolve_checkpoint(tmp_path / "missing")
    with pytest.raises(ValueError):
        resolve_checkpoint(tmp_path)


# --------------------------------------------------------------------------- FSDP checkpoints

# What verl's FSDPCheckpointManager writes for each actor (utils/checkpoint/fsdp_checkpoint_manager.py):
# model_world_size_{W}_rank_{r}.pt (model.state_dict() under FSDP2 = DTensors sharded on dim 0),
# fsdp_config.json {"FSDP_version", "world_size"}, huggingface/ (config + tokenizer). The script below
# produces the same with real FSDP2 (fully_shard) over gloo in W spawned CPU processes, without Ray.
FSDP_SAVE = textwrap.dedent(
    """
    import json, os, sys
    import torch, torch.distributed as dist, torch.multiprocessing as mp

    def worker(rank, world, hf_dir, out_dir, port):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.set_num_threads(1)
        dist.init_process_group("gloo", rank=rank, world_size=world)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        from transformers import AutoModelForCausalLM, AutoTokenizer
        mesh = init_device_mesh("cpu", (world,), mesh_dim_names=("fsdp",))
        model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        torch.save(model.state_dict(), os.path.join(out_dir, f"model_world_size_{world}_rank_{rank}.pt"))
        if rank == 0:
            json.dump({"FSDP_version": 2, "world_size": world}, open(os.path.join(out_dir, "fsdp_config.json"), "w"))
            hf = os.path.join(out_dir, "huggingface")
            os.makedirs(hf, exist_ok=True)
            model.config.save_pretrained(hf)
            AutoTokenizer.from_pretrained(hf_dir).save_pretrained(hf)
        dist.barrier()
        dist.destroy_process_group()

    if __name__ == "__main__":
        hf_dir, out_dir, world, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        os.makedirs(out_dir, exist_ok=True)
        mp.spawn(worker, args=(world, hf_dir, out_dir, port), nprocs=world, join=True)
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()


def test_merge_plain_single_rank_checkpoint(small_world, tmp_path):
    """World size 1 with plain tensors (what a non-sharded save looks like)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    actor = tmp_path / "ckpt" / "global_step_2" / "actor"
    (actor / "huggingface").mkdir(parents=True)
    ref = _weights(small_world / "student")
    torch.save({k: v.clone() for k, v in ref.items()}, actor / "model_world_size_1_rank_0.pt")
    (actor / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": 1}))
    AutoConfig.from_pretrained(small_world / "student").save_pretrained(actor / "huggingface")
    AutoTokenizer.from_pretrained(small_world / "student").save_pretrained(actor / "huggingface")
    (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").write_text("2")

    hf = resolve_checkpoint(tmp_path / "ckpt")  # trainer root -> latest step -> actor -> merged
    assert hf == actor.parent / MERGED_DIR_NAME and is_hf_dir(hf)
    got = _weights(hf)
    assert got.keys() == ref.keys()
    for k in ref:  # verl's merger stores bf16
        torch.testing.assert_close(got[k], ref[k].bfloat16().float())
    mtime = (hf / "model.safetensors").stat().st_mtime_ns
    assert resolve_checkpoint(actor.parent) == hf and (hf / "model.safetensors").stat().st_mtime_ns == mtime  # cached


@pytest.mark.slow
def test_merge_real_fsdp2_sharded_checkpoint(small_world, tmp_path):
    """Two ranks, real FSDP2 DTensor shards (gloo, no Ray), merged by verl's FSDPModelMerger, then evaluated."""
    import torch

    script = tmp_path / "fsdp_save.py"
    script.write_text(FSDP_SAVE)
    actor = tmp_path / "global_step_5" / "actor"
    p = subprocess.run(
        [sys.executable, str(script), str(small_world / "student"), str(actor), "2", str(_free_port())],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert (actor / "model_world_size_2_rank_1.pt").exists()
    hf = resolve_checkpoint(tmp_path / "global_step_5")
    ref, got = _weights(small_world / "student"), _weights(hf)
    assert got.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k].bfloat16().float())
    from verl_frontier.evaluation import evaluate

    res = evaluate(actor, small_world / "data/test.parquet", n=2, max_new_tokens=16, limit=4)
    assert res["hf_dir"] == str(hf)


# --------------------------------------------------------------------------- e2e (real verl checkpoint)


@pytest.fixture
def verl_checkpoint(request):
    """A checkpoint written by verl's real trainer on CPU: $FRONTIER_VERL_CHECKPOINT, or a fixture named
    ``e2e_verl_checkpoint`` (e.g. from conftest.py); skipped if neither is there."""
    path = os.environ.get("FRONTIER_VERL_CHECKPOINT")
    if not path:
        try:
            path = request.getfixturevalue("e2e_verl_checkpoint")
        except pytest.FixtureLookupError:
            path = None
    if not path or not Path(path).exists():
        pytest.skip("needs a verl checkpoint (e2e)")
    return Path(path)


def test_evaluate_real_verl_checkpoint(verl_checkpoint, small_world):
    from verl_frontier.evaluation import evaluate

    hf = resolve_checkpoint(verl_checkpoint)
    assert is_hf_dir(hf)
    res = evaluate(verl_checkpoint, small_world / "data/test.parquet", n=2, max_new_tokens=32, limit=8)
    assert 0.0 <= res["greedy_accuracy"] <= 1.0
