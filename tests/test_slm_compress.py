"""SLM compression: structured pruning equals zeroing the pruned units, importance scores vs slow references,
torchao int8 checkpoints, bad settings named in the error."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM

from verl_frontier.slm_compress.prune import (
    PruneConfigError,
    PrunePlan,
    PruneSpec,
    activation_scores,
    apply_plan,
    count_params,
    make_plan,
    n_kept,
    plan_from_scores,
    weight_scores,
    zero_masked_copy,
)

#: the tiny Qwen2 of these tests (conftest's ``tiny_qwen2`` factory); the jitter breaks the initialisation's
#: symmetry so every unit matters differently (and biases are nonzero)
SMALL = {"intermediate_size": 24, "max_position_embeddings": 64, "jitter": 0.05}


def calib(seed=1, n=3, t=11):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 40, (n, t), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0  # padded tail: must not count
    return ids, mask


def logits(model, x):
    with torch.no_grad():
        return model(x).logits


@settings(max_examples=12, deadline=None)
@given(
    mlp=st.sampled_from([0.0, 0.25, 0.5, 0.9]),
    attn=st.sampled_from([0.0, 0.5]),
    gqa=st.sampled_from([(4, 2), (4, 4), (2, 1)]),
    importance=st.sampled_from(["activation", "weight"]),
    seed=st.integers(0, 3),
)
def test_pruned_model_equals_original_with_units_zeroed(mlp, attn, gqa, importance, seed, tiny_qwen2):
    model = tiny_qwen2(seed=seed, num_attention_heads=gqa[0], num_key_value_heads=gqa[1], **SMALL)
    ids, mask = calib(seed)
    plan = make_plan(model, PruneSpec(mlp, attn, importance), ids, mask)
    reference = zero_masked_copy(model, plan)
    pruned = apply_plan(copy.deepcopy(model), plan)
    x = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(logits(pruned, x), logits(reference, x), atol=1e-5, rtol=1e-5)
    cfg = pruned.config
    assert cfg.intermediate_size == n_kept(24, mlp)
    assert cfg.num_key_value_heads == n_kept(gqa[1], attn)
    assert cfg.num_attention_heads == cfg.num_key_value_heads * (gqa[0] // gqa[1])
    assert cfg.head_dim == 32 // gqa[0]


def test_pruned_checkpoint_loads_and_has_fewer_params(tmp_path, tiny_qwen2):
    model = tiny_qwen2(**SMALL)
    ids, mask = calib()
    before = count_params(model)
    plan = make_plan(model, PruneSpec(0.5, 0.5, "activation"), ids, mask)
    pruned = apply_plan(copy.deepcopy(model), plan)
    pruned.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    x = torch.randint(0, 40, (2, 9))
    torch.testing.assert_close(logits(loaded, x), logits(pruned, x), atol=0, rtol=0)
    # per layer: gate/up/down lose 12 channels x 32 each; one KV group = 2 q heads + 1 k + 1 v head of dim 8 (+ biases)
    d, layers = 8, 2
    mlp_removed = 3 * 12 * 32
    attn_removed = (2 * d) * 32 + 2 * d + 2 * (d * 32 + d) + 32 * (2 * d)  # q (+bias), k/v (+bias), o columns
    assert before - count_params(loaded) == layers * (mlp_removed + attn_removed)
    # generation works with the pruned attention (KV cache shapes follow the new head counts)
    out = loaded.generate(torch.tensor([[3, 4, 5]]), max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 8)


@torch.no_grad()
def test_activation_scores_match_slow_reference(tiny_qwen2):
    model = tiny_qwen2(**SMALL)
    ids, mask = calib()
    mlp_scores, group_scores = activation_scores(model, ids, mask, batch_size=2)  # batching must not matter

    mlp_in, o_in = {}, {}
    hooks = []
    for i, layer in enumerate(model.model.layers):
        hooks.append(layer.mlp.register_forward_hook(lambda m, a, o, i=i: mlp_in.__setitem__(i, a[0].detach())))
        hooks.append(layer.self_attn.o_proj.register_forward_hook(lambda m, a, o, i=i: o_in.__setitem__(i, a[0])))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    for h in hooks:
        h.remove()
    tokens = [(b, t) for b in range(ids.shape[0]) for t in range(ids.shape[1]) if mask[b, t]]
    for i, layer in enumerate(model.model.layers):
        m = layer.mlp
        n_ch = m.down_proj.in_features
        for j in range(n_ch):
            total = 0.0
            for b, t in tokens:
                x = mlp_in[i][b, t].double()
                g = float(m.gate_proj.weight[j].double() @ x)
                u = float(m.up_proj.weight[j].double() @ x)
                total += abs(g / (1 + math.exp(-g)) * u)
            expected = total / len(tokens) * float(m.down_proj.weight[:, j].double().norm())
            assert math.isclose(float(mlp_scores[i][j]), expected, rel_tol=1e-4, abs_tol=1e-9)
        w_o = layer.self_attn.o_proj.weight.double()
        d = 8
        for g in range(2):
            total = 0.0
            for h in (2 * g, 2 * g + 1):  # the two query heads served by KV head g
                for b, t in tokens:
                    a_h = o_in[i][b, t, h * d : (h + 1) * d].double()
                    total += float((w_o[:, h * d : (h + 1) * d] @ a_h).norm())
            assert math.isclose(float(group_scores[i][g]), total / len(tokens), rel_tol=1e-4)


def test_weight_scores_hand_computed(tiny_qwen2):
    model = tiny_qwen2(
        **{**SMALL, "hidden_size": 8, "intermediate_size": 4, "num_hidden_layers": 1},
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    layer = model.model.layers[0]
    with torch.no_grad():
        for lin in (layer.mlp.gate_proj, layer.mlp.up_proj):
            lin.weight.fill_(1.0)  # row norms sqrt(8)
        layer.mlp.down_proj.weight.zero_()
        layer.mlp.down_proj.weight[:, 2] = 3.0  # column norm 3 * sqrt(8)
    mlp_scores, group_scores = weight_scores(model)
    expected = torch.zeros(4)
    expected[2] = 8.0 * 3 * math.sqrt(8)
    torch.testing.assert_close(mlp_scores[0], expected, rtol=1e-5, atol=1e-5)
    assert group_scores[0].shape == (1,)
    plan = plan_from_scores(mlp_scores, group_scores, PruneSpec(0.75, 0.0, "weight"))
    assert plan.mlp_keep == [[2]]


def test_plan_keeps_top_scores_sorted_with_index_tiebreak():
    mlp = [torch.tensor([0.1, 5.0, 3.0, 3.0, 0.2])]
    groups = [torch.tensor([1.0, 2.0, 0.5, 2.0])]
    plan = plan_from_scores(mlp, groups, PruneSpec(0.4, 0.5, "weight"))
    assert plan.mlp_keep == [[1, 2, 3]]  # 5 * 0.6 = 3 kept
    assert plan.group_keep == [[1, 3]]
    plan = plan_from_scores(mlp, groups, PruneSpec(0.6, 0.0, "weight"))
    assert plan.mlp_keep == [[1, 2]]  # tie 3.0/3.0: the lower index wins


@pytest.mark.parametrize(("total", "sparsity", "kept"), [(10, 0.0, 10), (10, 0.5, 5), (10, 0.99, 1), (4, 0.3, 3)])
def test_n_kept(total, sparsity, kept):
    assert n_kept(total, sparsity) == kept


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"mlp_sparsity": 1.0}, "mlp_sparsity"),
        ({"mlp_sparsity": -0.1}, "mlp_sparsity"),
        ({"attn_sparsity": 1.5}, "attn_sparsity"),
        ({"attn_sparsity": float("nan")}, "attn_sparsity"),
        ({"mlp_sparsity": "0.5"}, "mlp_sparsity"),
        ({"mlp_sparsity": True}, "mlp_sparsity"),
        ({"importance": "magnitude"}, "importance"),
    ],
)
def test_bad_prune_settings_are_named(kwargs, named):
    with pytest.raises(PruneConfigError, match=named) as info:
        PruneSpec(**kwargs).validate()
    value = next(iter(kwargs.values()))
    assert repr(value) in str(info.value)


def test_activation_importance_needs_calibration_data(tiny_qwen2):
    with pytest.raises(PruneConfigError, match="calibration"):
        make_plan(tiny_qwen2(**SMALL), PruneSpec(0.5, 0.0, "activation"))


def test_uneven_plan_rejected(tiny_qwen2):
    model = tiny_qwen2(**SMALL)
    plan = PrunePlan(mlp_keep=[[0, 1], [0]], group_keep=[[0], [1]])
    with pytest.raises(PruneConfigError, match="same number"):
        apply_plan(model, plan)


# ---------------------------------------------------------------- quantization (torchao)


@pytest.fixture
def float_ckpt(tmp_path, small_world_dir):
    """The small world's teacher: a real tiny Qwen2 checkpoint with tokenizer."""
    return small_world_dir / "teacher"


def test_int8_checkpoint_smaller_close_and_reloadable(float_ckpt, tmp_path):
    pytest.importorskip("torchao")
    from verl_frontier.slm_compress.quantize import checkpoint_bytes, quantize_checkpoint

    dst = quantize_checkpoint(float_ckpt, tmp_path / "int8", "int8")
    ref = AutoModelForCausalLM.from_pretrained(float_ckpt, dtype=torch.float32).eval()
    q = AutoModelForCausalLM.from_pretrained(dst).eval()
    assert q.config.quantization_config is not None
    assert "Int8" in type(q.model.layers[0].mlp.up_proj.weight).__name__
    x = torch.randint(2, ref.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    a, b = logits(ref, x), logits(q, x)
    rel = float((a - b).norm() / a.norm())
    assert 0 < rel < 0.05, rel  # quantized: not identical, but close
    # linear weights dominate this model: int8 storage must cut the weight bytes substantially
    assert checkpoint_bytes(dst) < 0.75 * checkpoint_bytes(float_ckpt)
    assert (dst / "tokenizer.json").is_file() or (dst / "tokenizer_config.json").is_file()


def test_quantize_bad_settings_are_named():
    pytest.importorskip("torchao")
    from verl_frontier.slm_compress.quantize import QuantizeConfigError, torchao_config

    with pytest.raises(QuantizeConfigError, match="scheme.*'fp3'"):
        torchao_config("fp3")
    with pytest.raises(QuantizeConfigError, match="int4.*'cpu'"):
        torchao_config("int4", 32, "cpu")
    with pytest.raises(QuantizeConfigError, match="group_size.*48"):
        torchao_config("int4", 48, "cuda")


def test_latency_generates_exactly_the_requested_tokens(float_ckpt):
    from verl_frontier.slm_compress.measure import generation_latency, load_model

    model, tok = load_model(float_ckpt)
    prompts = [[{"role": "user", "content": "Compute 1+2. Be concise."}]] * 2
    lat = generation_latency(model, tok, prompts, new_tokens=6)
    assert lat["prompts"] == 2 and lat["latency_s"] > 0
    assert math.isclose(lat["ms_per_token"], 1000 * lat["latency_s"] / 6)
    with pytest.raises(ValueError, match="new_tokens"):
        generation_latency(model, tok, prompts, new_tokens=0)


def test_cli_rejects_bad_sparsity(small_world_dir, tmp_path, capsys):
    from verl_frontier.slm_compress.__main__ import main

    src, dst = str(small_world_dir / "teacher"), str(tmp_path / "y")
    rc = main(["prune", "--src", src, "--dst", dst, "--mlp-sparsity", "1.2", "--importance", "weight"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--mlp-sparsity" in err and "1.2" in err and err.count("\n") == 1
    assert not (tmp_path / "y").exists()
    assert main(["prune", "--src", str(tmp_path / "x"), "--dst", dst, "--importance", "weight"]) == 2
    assert "argument --src: directory not found" in capsys.readouterr().err


def test_cli_prune_end_to_end(small_world_dir, tmp_path, capsys):
    from verl_frontier.slm_compress.__main__ import main

    teacher = small_world_dir / "teacher"
    rc = main(
        ["prune", "--src", str(teacher), "--dst", str(tmp_path / "p"), "--mlp-sparsity", "0.5", "--attn-sparsity",
         "0.5", "--calib", str(small_world_dir / "data" / "train.parquet"), "--calib-n", "16"]
    )  # fmt: skip
    assert rc == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "p")
    src = AutoModelForCausalLM.from_pretrained(teacher)
    assert model.config.intermediate_size == n_kept(src.config.intermediate_size, 0.5)
    assert model.config.num_key_value_heads == n_kept(src.config.num_key_value_heads, 0.5)
    assert count_params(model) < count_params(src)


def test_prune_checkpoint_keeps_source_dtype(small_world_dir, tmp_path):
    from verl_frontier.slm_compress.prune import copy_tokenizer_files, prune_checkpoint

    src = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(small_world_dir / "teacher", dtype=torch.bfloat16).save_pretrained(src)
    copy_tokenizer_files(small_world_dir / "teacher", src)
    prune_checkpoint(src, tmp_path / "p", PruneSpec(0.5, 0.0, "weight"))
    pruned = AutoModelForCausalLM.from_pretrained(tmp_path / "p", dtype="auto")
    assert pruned.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
