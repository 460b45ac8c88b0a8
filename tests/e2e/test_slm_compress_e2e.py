"""SLM compression through verl's real trainer on CPU: a structurally pruned model is re-distilled from the unpruned
one (recipes/slm_compress/slm_compress_tiny.yaml, 2 steps), its checkpoint merges to an HF model with the pruned
shapes, and that model quantizes to a loadable int8 checkpoint."""

from __future__ import annotations

import pytest
import torch
from verl_runner import assert_trained, run_recipe

pytestmark = pytest.mark.e2e


def test_redistill_pruned_model_then_quantize(small_world, tmp_path, shared_ray):
    from transformers import AutoModelForCausalLM

    from verl_frontier.evaluation.checkpoint import resolve_checkpoint
    from verl_frontier.slm_compress.prune import PruneSpec, prune_checkpoint

    teacher = small_world / "teacher"
    pruned = tmp_path / "pruned"
    info = prune_checkpoint(teacher, pruned, PruneSpec(0.5, 0.5, "weight"))
    assert info["params_after"] < info["params_before"]
    overrides = [
        f"actor_rollout_ref.model.path={pruned}",
        "data.train_batch_size=8",
        "actor_rollout_ref.actor.ppo_mini_batch_size=8",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        "trainer.save_freq=2",
    ]
    run = run_recipe("slm_compress", "slm_compress_tiny", tmp_path / "run", small_world, overrides, ray=shared_ray)
    assert_trained(run, [1, 2], tail_lines=200)
    steps = run.steps()
    # the pruned student differs from its unpruned teacher: a positive forward KL, that verl optimised
    assert steps[1]["actor/distillation/loss"] > 0.0

    hf = resolve_checkpoint(tmp_path / "run" / "checkpoints" / "global_step_2")
    trained = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
    start = AutoModelForCausalLM.from_pretrained(pruned, dtype=torch.float32)
    for key in ("intermediate_size", "num_attention_heads", "num_key_value_heads"):
        assert getattr(trained.config, key) == getattr(start.config, key) == info[key]
    assert trained.config.head_dim == start.config.head_dim
    assert start.config.intermediate_size < AutoModelForCausalLM.from_pretrained(teacher).config.intermediate_size
    changed = [
        name
        for (name, p), (_, q) in zip(trained.named_parameters(), start.named_parameters())
        if not torch.allclose(p, q)
    ]
    assert changed, "re-distillation did not update the pruned model"

    pytest.importorskip("torchao")
    from verl_frontier.slm_compress.prune import copy_tokenizer_files
    from verl_frontier.slm_compress.quantize import checkpoint_bytes, quantize_checkpoint

    merged = tmp_path / "redistilled"
    trained.save_pretrained(merged)
    copy_tokenizer_files(teacher, merged)
    quant = quantize_checkpoint(merged, tmp_path / "int8", "int8")
    q = AutoModelForCausalLM.from_pretrained(quant)
    assert q.config.intermediate_size == start.config.intermediate_size
    assert checkpoint_bytes(quant) < checkpoint_bytes(merged)
    x = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        a, b = trained(x).logits, q(x).logits
    assert float((a - b).norm() / a.norm()) < 0.05
