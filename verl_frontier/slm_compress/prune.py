"""One-shot structured pruning of Qwen2/Qwen3-style decoder models (pure torch + transformers, no verl).

Two structures are removed, each with a target sparsity (the fraction removed, per layer):

- **MLP channels.** A SwiGLU MLP is ``down(silu(gate(x)) * up(x))``; channel ``j`` (``0 <= j < I``) is row ``j``
  of ``W_gate``/``W_up`` ([I, D]) and column ``j`` of ``W_down`` ([D, I]). Removing it equals zeroing
  ``W_down[:, j]``.
- **Attention KV groups.** With grouped-query attention (``Hq`` query heads, ``Hkv`` key/value heads, ``G = Hq /
  Hkv``), KV head ``g`` serves query heads ``g*G .. g*G+G-1``; a group is pruned as a whole (its K/V head and its
  ``G`` query heads), so ``G`` stays the same and the model stays a valid GQA model. Removing a group equals
  zeroing the ``o_proj`` columns of its query heads. (With ``Hkv == Hq`` a group is one head.)

Importance (higher = kept), following the OSSCAR / Wanda idea of weighting weights by calibration activations
(arXiv 2502.14305 prunes MLP neurons and attention groups with OSSCAR; we keep its structure but score greedily
instead of solving OSSCAR's combinatorial layer-wise reconstruction):

- ``activation`` (needs calibration ``input_ids``): MLP channel ``j``: ``E_tokens |h_j| * ||W_down[:, j]||_2`` with
  ``h = silu(gate(x)) * up(x)``; query head ``h``: ``E_tokens ||W_o[:, h] a_h||_2`` (its contribution to the residual
  stream, ``a_h`` = the head's attention output), summed over the heads of a group.
- ``weight`` (data-free): MLP: ``||W_gate[j]|| * ||W_up[j]|| * ||W_down[:, j]||``; head: ``||W_q[h]||_F * ||W_v[g]||_F
  * ||W_o[:, h]||_F``, summed over the group.

The pruned model is a plain, smaller checkpoint of the same architecture (``intermediate_size``,
``num_attention_heads``, ``num_key_value_heads`` and an explicit ``head_dim`` updated), loadable with
``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

IMPORTANCE_METHODS = ("activation", "weight")
TOKENIZER_FILES = (
    "chat_template.jinja",
    "special_tokens_map.json",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
)


class PruneConfigError(ValueError):
    """A bad pruning setting; the message names the setting and the value."""


@dataclass
class PruneSpec:
    """``mlp_sparsity`` / ``attn_sparsity``: fraction of MLP channels / KV groups removed in every layer, in [0, 1)."""

    mlp_sparsity: float = 0.5
    attn_sparsity: float = 0.0
    importance: str = "activation"

    def validate(self) -> None:
        for key in ("mlp_sparsity", "attn_sparsity"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise PruneConfigError(f"{key} must be a number in [0, 1), got {value!r}")
            if not 0.0 <= value < 1.0:
                raise PruneConfigError(f"{key} must be in [0, 1) (the fraction removed), got {value!r}")
        if self.importance not in IMPORTANCE_METHODS:
            raise PruneConfigError(f"importance must be one of {IMPORTANCE_METHODS}, got {self.importance!r}")


@dataclass
class PrunePlan:
    """Indices kept per layer (sorted): ``mlp_keep[l]`` channels, ``group_keep[l]`` KV groups."""

    mlp_keep: list[list[int]]
    group_keep: list[list[int]]
    scores: dict = field(default_factory=dict)


def n_kept(total: int, sparsity: float) -> int:
    """Units kept out of ``total`` at ``sparsity``: ``round(total * (1 - sparsity))``, at least 1."""
    return max(1, min(total, int(round(total * (1.0 - sparsity)))))


def _layers(model) -> list[nn.Module]:
    return list(model.model.layers)


def _dims(model) -> tuple[int, int, int]:
    attn = _layers(model)[0].self_attn
    head_dim = attn.head_dim
    n_q = attn.q_proj.out_features // head_dim
    n_kv = attn.k_proj.out_features // head_dim
    return n_q, n_kv, head_dim


def _check_supported(model) -> None:
    for i, layer in enumerate(_layers(model)):
        mlp, attn = getattr(layer, "mlp", None), getattr(layer, "self_attn", None)
        if mlp is None or not all(hasattr(mlp, k) for k in ("gate_proj", "up_proj", "down_proj")):
            raise PruneConfigError(f"layer {i}: expected a gated MLP (gate_proj/up_proj/down_proj), got {type(mlp)}")
        if attn is None or not all(hasattr(attn, k) for k in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim")):
            raise PruneConfigError(f"layer {i}: expected q/k/v/o attention projections, got {type(attn)}")
        # per-head q_norm/k_norm (Qwen3) have [head_dim] weights shared across heads: pruning heads keeps them valid


@torch.no_grad()
def weight_scores(model) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Data-free scores: per layer ``[I]`` for MLP channels and ``[Hkv]`` for KV groups."""
    n_q, n_kv, d = _dims(model)
    group = n_q // n_kv
    mlp_scores, group_scores = [], []
    for layer in _layers(model):
        m = layer.mlp
        s = m.gate_proj.weight.norm(dim=1) * m.up_proj.weight.norm(dim=1) * m.down_proj.weight.norm(dim=0)
        mlp_scores.append(s.float())
        a = layer.self_attn
        q = a.q_proj.weight.view(n_q, d, -1).flatten(1).norm(dim=1)  # [Hq]
        v = a.v_proj.weight.view(n_kv, d, -1).flatten(1).norm(dim=1)  # [Hkv]
        o = a.o_proj.weight.view(-1, n_q, d).transpose(0, 1).flatten(1).norm(dim=1)  # [Hq]
        head = q * o * v.repeat_interleave(group)
        group_scores.append(head.view(n_kv, group).sum(dim=1).float())
    return mlp_scores, group_scores


@torch.no_grad()
def activation_scores(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, batch_size: int = 32
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Calibration scores from ``input_ids`` [N, T] (``attention_mask`` [N, T], 1 = real token).

    Returns per layer ``[I]`` (MLP: mean |h_j| * ||W_down[:, j]||) and ``[Hkv]`` (sum over the group's query heads
    of the mean ||W_o[:, h] a_h||), means over the real tokens."""
    n_q, n_kv, d = _dims(model)
    group = n_q // n_kv
    layers = _layers(model)
    mlp_sum = [torch.zeros(layer.mlp.down_proj.in_features, dtype=torch.float64) for layer in layers]
    head_sum = [torch.zeros(n_q, dtype=torch.float64) for _ in layers]
    n_tokens = 0
    mask_box: dict[str, torch.Tensor] = {}
    hooks = []

    def mlp_hook(idx):
        def hook(module, args):
            h = args[0].double()  # [B, T, I], input of down_proj
            m = mask_box["mask"]
            mlp_sum[idx].add_((h.abs() * m[..., None]).sum(dim=(0, 1)))

        return hook

    def attn_hook(idx):
        w_o = layers[idx].self_attn.o_proj.weight.double().view(-1, n_q, d)  # [D, Hq, d]

        def hook(module, args):
            a = args[0].double()  # [B, T, Hq*d], input of o_proj
            a = a.view(*a.shape[:2], n_q, d)
            contrib = torch.einsum("bthk,ohk->btho", a, w_o).norm(dim=-1)  # [B, T, Hq]
            head_sum[idx].add_((contrib * mask_box["mask"][..., None]).sum(dim=(0, 1)))

        return hook

    for i, layer in enumerate(layers):
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(mlp_hook(i)))
        hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(attn_hook(i)))
    was_training = model.training
    model.eval()
    try:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        for start in range(0, input_ids.shape[0], batch_size):
            ids = input_ids[start : start + batch_size]
            mask = attention_mask[start : start + batch_size]
            mask_box["mask"] = mask.double()
            model(input_ids=ids, attention_mask=mask)
            n_tokens += int(mask.sum())
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if n_tokens == 0:
        raise PruneConfigError("calibration data has no tokens (attention_mask is all zero)")
    mlp_scores, group_scores = [], []
    for i, layer in enumerate(layers):
        w_down_norm = layer.mlp.down_proj.weight.double().norm(dim=0)
        mlp_scores.append((mlp_sum[i] / n_tokens * w_down_norm).float())
        group_scores.append((head_sum[i] / n_tokens).view(n_kv, group).sum(dim=1).float())
    return mlp_scores, group_scores


def plan_from_scores(mlp_scores, group_scores, spec: PruneSpec) -> PrunePlan:
    """Keep the ``n_kept`` highest-scoring units per layer (ties broken by lower index); indices sorted."""
    spec.validate()

    def top(scores: torch.Tensor, keep: int) -> list[int]:
        order = sorted(range(len(scores)), key=lambda j: (-float(scores[j]), j))
        return sorted(order[:keep])

    mlp_keep = [top(s, n_kept(len(s), spec.mlp_sparsity)) for s in mlp_scores]
    group_keep = [top(s, n_kept(len(s), spec.attn_sparsity)) for s in group_scores]
    return PrunePlan(
        mlp_keep,
        group_keep,
        scores={"mlp": [s.tolist() for s in mlp_scores], "attn_groups": [s.tolist() for s in group_scores]},
    )


def make_plan(model, spec: PruneSpec, calib_ids=None, calib_mask=None) -> PrunePlan:
    spec.validate()
    _check_supported(model)
    if spec.importance == "activation":
        if calib_ids is None:
            raise PruneConfigError("importance='activation' needs calibration input_ids (or use importance='weight')")
        scores = activation_scores(model, calib_ids, calib_mask)
    else:
        scores = weight_scores(model)
    return plan_from_scores(*scores, spec)


def _slice_linear(lin: nn.Linear, out_idx=None, in_idx=None) -> nn.Linear:
    w = lin.weight.data
    b = lin.bias.data if lin.bias is not None else None
    if out_idx is not None:
        w = w[out_idx]
        b = b[out_idx] if b is not None else None
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype, device=w.device)
    new.weight.data.copy_(w)
    if b is not None:
        new.bias.data.copy_(b)
    return new


@torch.no_grad()
def apply_plan(model, plan: PrunePlan):
    """Prune ``model`` in place to ``plan`` (same counts in every layer) and update its config."""
    n_q, n_kv, d = _dims(model)
    group = n_q // n_kv
    layers = _layers(model)
    n_mlp = {len(k) for k in plan.mlp_keep}
    n_groups = {len(k) for k in plan.group_keep}
    if (
        len(plan.mlp_keep) != len(layers)
        or len(plan.group_keep) != len(layers)
        or len(n_mlp) != 1
        or len(n_groups) != 1
    ):
        raise PruneConfigError("a plan must keep the same number of channels / groups in every layer")
    for layer, mlp_keep, group_keep in zip(layers, plan.mlp_keep, plan.group_keep):
        idx = torch.tensor(mlp_keep, dtype=torch.long)
        m = layer.mlp
        m.gate_proj = _slice_linear(m.gate_proj, out_idx=idx)
        m.up_proj = _slice_linear(m.up_proj, out_idx=idx)
        m.down_proj = _slice_linear(m.down_proj, in_idx=idx)
        if hasattr(m, "intermediate_size"):
            m.intermediate_size = len(mlp_keep)
        a = layer.self_attn
        kv_rows = torch.tensor([g * d + k for g in group_keep for k in range(d)], dtype=torch.long)
        q_heads = [g * group + r for g in group_keep for r in range(group)]
        q_rows = torch.tensor([h * d + k for h in q_heads for k in range(d)], dtype=torch.long)
        a.q_proj = _slice_linear(a.q_proj, out_idx=q_rows)
        a.k_proj = _slice_linear(a.k_proj, out_idx=kv_rows)
        a.v_proj = _slice_linear(a.v_proj, out_idx=kv_rows)
        a.o_proj = _slice_linear(a.o_proj, in_idx=q_rows)
        a.head_dim = d
        a.num_key_value_groups = group
    cfg = model.config
    cfg.intermediate_size = n_mlp.pop()
    kept_groups = n_groups.pop()
    cfg.num_key_value_heads = kept_groups
    cfg.num_attention_heads = kept_groups * group
    cfg.head_dim = d  # no longer hidden_size // num_attention_heads
    return model


@torch.no_grad()
def zero_masked_copy(model, plan: PrunePlan):
    """Reference: a copy of ``model`` with the pruned units zeroed (W_down columns, o_proj columns), same shapes."""
    import copy

    n_q, n_kv, d = _dims(model)
    group = n_q // n_kv
    out = copy.deepcopy(model)
    for layer, mlp_keep, group_keep in zip(_layers(out), plan.mlp_keep, plan.group_keep):
        for j in range(layer.mlp.down_proj.in_features):
            if j not in mlp_keep:
                layer.mlp.down_proj.weight[:, j] = 0.0
        for g in range(n_kv):
            if g not in group_keep:
                for r in range(group):
                    h = g * group + r
                    layer.self_attn.o_proj.weight[:, h * d : (h + 1) * d] = 0.0
    return out


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def prune_model(model, spec: PruneSpec, calib_ids=None, calib_mask=None) -> tuple[object, PrunePlan]:
    plan = make_plan(model, spec, calib_ids, calib_mask)
    return apply_plan(model, plan), plan


def calibration_batch(tokenizer, texts: list[str], max_length: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask`` [N, T] for ``texts``."""
    if not texts:
        raise PruneConfigError("calibration texts are empty")
    enc = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_length] for t in texts]
    width = max(len(e) for e in enc)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(enc), width), pad, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, : len(e)] = torch.tensor(e, dtype=torch.long)
        mask[i, : len(e)] = 1
    return ids, mask


def copy_tokenizer_files(src: str | Path, dst: str | Path) -> None:
    """Copy tokenizer / chat template / generation config files that ``save_pretrained`` of a model does not write."""
    src, dst = Path(src), Path(dst)
    for f in src.iterdir():
        if f.is_file() and (
            f.name.startswith("tokenizer")
            or f.name
            in ("chat_template.jinja", "special_tokens_map.json", "generation_config.json", "vocab.json", "merges.txt")
        ):  # noqa: E501
            shutil.copy2(f, dst / f.name)


def _source_dtype(src: str | Path) -> torch.dtype | None:
    import json

    cfg = Path(src) / "config.json"
    if not cfg.is_file():
        return None
    data = json.loads(cfg.read_text())
    name = data.get("dtype") or data.get("torch_dtype")
    value = getattr(torch, name, None) if isinstance(name, str) else None
    return value if isinstance(value, torch.dtype) else None


def prune_checkpoint(
    src: str | Path,
    dst: str | Path,
    spec: PruneSpec,
    calib_texts: list[str] | None = None,
    max_length: int = 256,
) -> dict:
    """Load the HF checkpoint ``src``, prune it, save it with its tokenizer to ``dst``; returns a summary."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec.validate()
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(src)
    before = count_params(model)
    ids = mask = None
    if spec.importance == "activation":
        if not calib_texts:
            raise PruneConfigError("importance='activation' needs calibration texts (or use importance='weight')")
        ids, mask = calibration_batch(tokenizer, calib_texts, max_length)
    model, plan = prune_model(model, spec, ids, mask)
    saved_dtype = _source_dtype(src)
    if saved_dtype is not None:
        model.to(saved_dtype)  # scores are computed in float32; the checkpoint keeps the source's dtype
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    copy_tokenizer_files(src, dst)
    return {
        "params_before": before,
        "params_after": count_params(model),
        "intermediate_size": model.config.intermediate_size,
        "num_attention_heads": model.config.num_attention_heads,
        "num_key_value_heads": model.config.num_key_value_heads,
        "mlp_keep": plan.mlp_keep,
        "group_keep": plan.group_keep,
    }
