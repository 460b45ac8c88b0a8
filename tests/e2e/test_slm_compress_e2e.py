"""SLM compression through verl's real trainer on CPU: a structurally pruned model is re-distilled from the unpruned
one (recipes/slm_compress/slm_compress_tiny.yaml, 2 steps), its checkpoint merges to an HF model with the pruned
shapes, and that model quantizes to a loadable int8 checkpoint. With FRONTIER_E2E_RESUME_ALL=1 the run trains 4
steps, and a second launch resumed from its step-2 checkpoint must log the same on-policy steps 3-4 (the rollout
server derives its sampling seeds from the training step, so the resumed launch samples what the straight one did)."""

from __future__ import annotations

import pytest
import torch
from verl_runner import RESUME_ALL, assert_resumes, batch_overrides, run_straight

pytestmark = pytest.mark.e2e


def test_redistill_pruned_model_then_quantize_and_resumes(small_world, tmp_path, shared_ray):
    from transformers import AutoModelForCausalLM

    from verl_frontier.evaluation.checkpoint import resolve_checkpoint
    from verl_frontier.slm_compress.prune import PruneSpec, prune_checkpoint

    teacher = small_world / "teacher"
    pruned = tmp_path / "pruned"
    info = prune_checkpoint(teacher, pruned, PruneSpec(0.5, 0.5, "weight"))
    assert info["params_after"] < info["params_before"]
    overrides = [
        f"actor_rollout_ref.model.path={pruned}",
        # the resume check trains each mini-batch (8 prompts x 4 rollouts) in one micro-batch: verl logs the top-k
        # diagnostics (distillation/student_mass, teacher_mass, overlap_*) as a mean of per-micro-batch means, which
        # depends on which rows share a micro-batch, and which row holds which of a prompt's rollouts follows the
        # order in which its requests reached the rollout server
        *batch_overrides(8, micro=32 if RESUME_ALL else 8),
    ]
    run = run_straight(
        "slm_compress", "slm_compress_tiny", tmp_path / "run", small_world, overrides, ray=shared_ray,
        resumable=RESUME_ALL, checkpoint=True, tail_lines=200,
    )  # fmt: skip
    # the pruned student differs from its unpruned teacher: a positive forward KL, that verl optimised
    assert run.steps()[1]["actor/distillation/loss"] > 0.0
    if RESUME_ALL:
        assert_resumes(run, overrides)

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
