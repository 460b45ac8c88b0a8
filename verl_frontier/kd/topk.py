"""Divergences between a student (full-vocabulary logits) and a teacher known only on its top-k tokens.

verl's teacher servers return, per token, the teacher's K largest log-probabilities ``log p_T(k)`` (normalised
over the full vocabulary) and their token ids. With ``q_S = softmax(student_logits)`` gathered at those ids:

- ``forward_kl`` (verl 0.9.1's ``compute_forward_kl_topk``, term for term)::

      FKL_topk = sum_k p_T(k) (log p_T(k) - log q_S(k)),  both log-probs clamped at ``log_prob_min_clamp``

  Not renormalised, so it can be negative when the student puts more mass on the top-k than the teacher
  (sum_k q_S(k) > sum_k p_T(k)); verl clamps the loss afterwards.
- ``reverse_kl``: KL(q̂_S || p̂_T) with both distributions renormalised on the teacher's top-k support
  (``q̂ = q_S / sum_k q_S``). A true KL, hence >= 0; equals the full-vocabulary reverse KL when K == V.
- ``jsd``: the generalised Jensen-Shannon divergence of GKD (Agarwal et al. 2024, Eq. 1) on the same
  renormalised support, in TRL's ``GKDTrainer.generalized_jsd_loss`` convention::

      M = beta * p̂_T + (1 - beta) * q̂_S
      JSD(beta) = beta * KL(p̂_T || M) + (1 - beta) * KL(q̂_S || M)       0 < beta < 1
      JSD(0) = KL(p̂_T || q̂_S) (forward KL),  JSD(1) = KL(q̂_S || p̂_T) (reverse KL)

  (TRL special-cases the endpoints: the formula itself tends to 0 at both ends, JSD(beta) ~ beta * FKL.)

Shapes: student logits [..., N, V] (verl passes [1, total_tokens, V]), teacher tensors [..., N, K]; every
output is [..., N]. All arithmetic is float32 (or float64 for float64 inputs). The student's log-probs at the
teacher ids are computed as ``logit[id] - logsumexp(logits)`` in chunks of rows by a custom autograd function
(:func:`gathered_log_softmax`), so no [N, V] log-softmax tensor is materialised in the forward pass and
nothing of size [N, V] is saved for backward beyond the input logits themselves.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

__all__ = ["gathered_log_softmax", "generalized_jsd_from_log_probs", "kl_from_log_probs", "topk_divergences"]

#: stand-in for log(0) inside the JSD mixture: finite so that autograd never forms inf - inf
_LOG_ZERO = -1e30


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _safe_lse(x: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dim, keepdim. -inf entries are replaced by a finite stand-in first, so a row
    that is entirely -inf gets a finite (hugely negative) value instead of -inf: ``x - lse`` stays -inf there
    and neither the value nor autograd's backward forms inf - inf (NaN)."""
    return torch.logsumexp(x.clamp_min(_LOG_ZERO), dim=-1, keepdim=True)


class _GatheredLogSoftmax(torch.autograd.Function):
    """out[n, k] = logits[n, ids[n, k]] - logsumexp(logits[n]) in float32, chunked over rows n.

    Backward: d out[n, k] / d logits[n, j] = [j == ids[n, k]] - softmax(logits[n])_j, recomputed per chunk.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, ids: torch.Tensor, chunk_size: int) -> torch.Tensor:
        n_rows, _ = logits.shape
        dtype = _compute_dtype(logits.dtype)
        out = torch.empty(ids.shape, dtype=dtype, device=logits.device)
        lse = torch.empty((n_rows, 1), dtype=dtype, device=logits.device)
        for start in range(0, n_rows, chunk_size):
            stop = min(start + chunk_size, n_rows)
            chunk = logits[start:stop].to(dtype)
            lse[start:stop] = _safe_lse(chunk)
            out[start:stop] = torch.gather(chunk, -1, ids[start:stop]) - lse[start:stop]
        ctx.save_for_backward(logits, ids, lse)
        ctx.chunk_size = chunk_size
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        logits, ids, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ctx.chunk_size):
            stop = min(start + ctx.chunk_size, logits.shape[0])
            g_out = grad_out[start:stop].to(lse.dtype)
            softmax = torch.exp(logits[start:stop].to(lse.dtype) - lse[start:stop])
            softmax.mul_(-g_out.sum(-1, keepdim=True))
            softmax.scatter_add_(-1, ids[start:stop], g_out)
            grad[start:stop] = softmax
        return grad, None, None


def gathered_log_softmax(logits: torch.Tensor, ids: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """``log_softmax(logits, -1).gather(-1, ids)`` without an [N, V] log-softmax tensor.

    Args:
        logits: [..., V] (any float dtype; computed in float32, float64 stays float64).
        ids: [..., K] integer token ids.
        chunk_size: rows per chunk (memory only, not numerics).

    Returns:
        [..., K] float32 (float64) log-probabilities. Differentiable w.r.t. ``logits``.
    """
    if logits.shape[:-1] != ids.shape[:-1]:
        raise ValueError(f"logits {tuple(logits.shape)} and ids {tuple(ids.shape)} disagree on leading dims")
    vocab, k = logits.shape[-1], ids.shape[-1]
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise ValueError(f"token ids must lie in [0, {vocab}); got [{int(ids.min())}, {int(ids.max())}]")
    flat = _GatheredLogSoftmax.apply(logits.reshape(-1, vocab), ids.reshape(-1, k).long(), max(int(chunk_size), 1))
    return flat.reshape(ids.shape)


def kl_from_log_probs(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_k p_k (log p_k - log q_k) over the last dim; terms with p_k == 0 are 0 (no NaN)."""
    p = log_p.exp()
    diff = torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))
    return (p * diff).sum(-1)


def generalized_jsd_from_log_probs(log_s: torch.Tensor, log_t: torch.Tensor, beta: float) -> torch.Tensor:
    """Generalised JSD(beta) of GKD in TRL's convention (see the module docstring), over the last dim.

    ``log_s``: student log-probs, ``log_t``: teacher log-probs, both normalised over the last dim.
    beta == 0 -> KL(T || S); beta == 1 -> KL(S || T); else beta KL(T || M) + (1 - beta) KL(S || M) with
    M = beta T + (1 - beta) S.
    """
    beta = _check_jsd_beta(beta)
    if beta == 0.0:
        return kl_from_log_probs(log_t, log_s)
    if beta == 1.0:
        return kl_from_log_probs(log_s, log_t)
    # finite stand-ins for log 0: zero-probability entries get zero gradient through clamp_min and never
    # produce inf - inf in logaddexp's backward
    log_m = torch.logaddexp(log_s.clamp_min(_LOG_ZERO) + math.log1p(-beta), log_t.clamp_min(_LOG_ZERO) + math.log(beta))
    return beta * kl_from_log_probs(log_t, log_m) + (1.0 - beta) * kl_from_log_probs(log_s, log_m)


def _check_jsd_beta(beta) -> float:
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"jsd_beta must lie in [0, 1], got {beta}")
    return beta


def topk_divergences(
    student_logits: torch.Tensor,
    teacher_topk_log_probs: torch.Tensor,
    teacher_topk_ids: torch.Tensor,
    jsd_beta: float | None = None,
    log_prob_min_clamp: float | None = None,
    chunk_size: int = 4096,
) -> dict[str, torch.Tensor]:
    """Per-token divergences on the teacher's top-k support.

    Args:
        student_logits: [..., N, V], requires grad (bf16/fp16/fp32; computed in float32).
        teacher_topk_log_probs: [..., N, K] teacher log-probabilities (full-vocabulary normalised).
        teacher_topk_ids: [..., N, K] their token ids.
        jsd_beta: also compute "jsd" with this beta in [0, 1] (TRL convention); None -> no "jsd" key.
        log_prob_min_clamp: verl's ``distillation_loss.log_prob_min_clamp``; applied to both log-probs of
            ``forward_kl`` only (exactly as verl). ``reverse_kl`` / ``jsd`` are true divergences of the
            renormalised distributions and are not clamped.
        chunk_size: rows per chunk of the student's logsumexp (memory only).

    Returns:
        dict of [..., N] tensors: "forward_kl", "reverse_kl", "jsd" (only when ``jsd_beta`` is given),
        "student_mass" = sum_k q_S(k), "teacher_mass" = sum_k p_T(k) (both before clamping, detached).
    """
    if teacher_topk_log_probs.shape != teacher_topk_ids.shape:
        raise ValueError(
            f"teacher_topk_log_probs {tuple(teacher_topk_log_probs.shape)} and teacher_topk_ids "
            f"{tuple(teacher_topk_ids.shape)} must have the same shape"
        )
    if student_logits.shape[:-1] != teacher_topk_ids.shape[:-1]:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher top-k {tuple(teacher_topk_ids.shape)} "
            "disagree on the token dims"
        )
    if jsd_beta is not None:
        jsd_beta = _check_jsd_beta(jsd_beta)
    dtype = _compute_dtype(student_logits.dtype)
    student_lp = gathered_log_softmax(student_logits, teacher_topk_ids, chunk_size=chunk_size)  # [..., N, K]
    teacher_lp = teacher_topk_log_probs.to(dtype)

    student_mass = student_lp.detach().exp().sum(-1)
    teacher_mass = teacher_lp.detach().exp().sum(-1)

    # verl: kl_divergence(log_q=student, log_p=teacher) after the optional clamp, p * (log p - log q) summed
    student_c, teacher_c = student_lp, teacher_lp
    if log_prob_min_clamp is not None:
        student_c = student_lp.clamp_min(log_prob_min_clamp)
        teacher_c = teacher_lp.clamp_min(log_prob_min_clamp)
    forward_kl = (teacher_c.exp() * (teacher_c - student_c)).sum(-1)

    # renormalise both on the top-k support
    student_hat = student_lp - _safe_lse(student_lp)
    teacher_hat = teacher_lp - _safe_lse(teacher_lp)
    reverse_kl = kl_from_log_probs(student_hat, teacher_hat)
    out = {
        "forward_kl": forward_kl,
        "reverse_kl": reverse_kl,
        "student_mass": student_mass,
        "teacher_mass": teacher_mass,
    }
    if jsd_beta is not None:
        out["jsd"] = generalized_jsd_from_log_probs(student_hat, teacher_hat, jsd_beta)
    return out
