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

Zero probabilities. vLLM reports a teacher token of probability 0 (e.g. one masked by its sampler) as log-prob
-inf, and a masked student logit (-inf) gives a student log-prob -inf. The true forward KL is then +inf where
the student gives 0 to a teacher token, and the true reverse KL +inf where the teacher gives 0 to a token the
student does not; neither is a usable training signal, so every output stays finite, with defined gradients:

- ``forward_kl``: a teacher entry at -inf is a zero-probability token and contributes exactly 0 (p log p := 0;
  with ``log_prob_min_clamp`` verl would clamp it to the clamp value c and add e^c (c - log q_c), which is not a
  term of the KL). The student's log-probs are raised to ``LOG_PROB_FLOOR`` (-100) in value only: the gradient
  passes through unchanged (-p_T(k) w.r.t. log q_S(k)), so a student token below the floor is still pulled up.
- ``reverse_kl`` / ``jsd``: the teacher's log-probs are clamped from below at ``LOG_PROB_FLOOR`` before the
  renormalisation (e^-100 ~ 4e-44 is below float32's normal range: a probability float32 cannot tell from 0).
  A -inf teacher entry thus costs q̂_S(k) (log q̂_S(k) + 100 + log Z) instead of +inf, a large but finite
  push away from the token; a row whose K teacher entries are all -inf becomes the uniform distribution on
  the K ids. A student entry at -inf has q̂_S(k) = 0 and contributes 0 (q log q := 0); a row where the
  student gives 0 to all K ids has reverse KL 0 and zero gradient.

Shapes: student logits [..., N, V] (verl passes [1, total_tokens, V]), teacher tensors [..., N, K]; every
output is [..., N]. All arithmetic is float32 (or float64 for float64 inputs). The student's log-probs at the
teacher ids are computed as ``(logit[id] - max) - log sum exp(logits - max)`` (exact at any logit magnitude)
in chunks of rows by a custom autograd function
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

#: lower bound applied to the log-probs that would make a divergence infinite (module docstring)
LOG_PROB_FLOOR = -100.0


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _safe_lse(x: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dim, keepdim. A row that is entirely -inf gets the finite value log K (its
    entries are replaced by 0 first), so ``x - lse`` stays -inf there and neither the value nor autograd's
    backward forms inf - inf (NaN); every other row, however negative its finite entries, is exact."""
    dead = torch.isneginf(x).all(-1, keepdim=True)
    return torch.logsumexp(torch.where(dead, torch.zeros_like(x), x), dim=-1, keepdim=True)


def _shift_and_log_sum(chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row max m, log sum_j exp(x_j - m)) of [c, V] logits, both [c, 1]; log-probs are (x - m) - log_sum.

    Subtracting the max before anything else keeps log-probs exact at any logit magnitude (x - logsumexp(x)
    would lose every digit below the ulp of x, e.g. 0 instead of -log V for a row of -3e38). A row that is
    -inf everywhere gets m = 0 and log_sum = 0: its log-probs stay -inf and its softmax is 0."""
    row_max = chunk.amax(-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    log_sum = torch.exp(chunk - row_max).sum(-1, keepdim=True).log_()
    log_sum = torch.where(torch.isneginf(log_sum), torch.zeros_like(log_sum), log_sum)
    return row_max, log_sum


class _GatheredLogSoftmax(torch.autograd.Function):
    """out[n, k] = (logits[n, ids[n, k]] - m_n) - log sum_j exp(logits[n, j] - m_n) in float32 (m_n the row
    max), chunked over rows n.

    Backward: d out[n, k] / d logits[n, j] = [j == ids[n, k]] - softmax(logits[n])_j, recomputed per chunk.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, ids: torch.Tensor, chunk_size: int) -> torch.Tensor:
        n_rows, _ = logits.shape
        dtype = _compute_dtype(logits.dtype)
        out = torch.empty(ids.shape, dtype=dtype, device=logits.device)
        shift = torch.empty((n_rows, 2), dtype=dtype, device=logits.device)  # (m, log_sum) per row
        for start in range(0, n_rows, chunk_size):
            stop = min(start + chunk_size, n_rows)
            chunk = logits[start:stop].to(dtype)
            row_max, log_sum = _shift_and_log_sum(chunk)
            shift[start:stop, :1], shift[start:stop, 1:] = row_max, log_sum
            out[start:stop] = (torch.gather(chunk, -1, ids[start:stop]) - row_max) - log_sum
        ctx.save_for_backward(logits, ids, shift)
        ctx.chunk_size = chunk_size
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        logits, ids, shift = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ctx.chunk_size):
            stop = min(start + ctx.chunk_size, logits.shape[0])
            g_out = grad_out[start:stop].to(shift.dtype)
            softmax = logits[start:stop].to(shift.dtype) - shift[start:stop, :1]
            softmax = softmax.sub_(shift[start:stop, 1:]).exp_()
            softmax.mul_(-g_out.sum(-1, keepdim=True))
            softmax.scatter_add_(-1, ids[start:stop], g_out)
            grad[start:stop] = softmax
        return grad, None, None


class _FloorValue(torch.autograd.Function):
    """max(x, floor) in value, identity in gradient (straight-through): d out / d x = 1 everywhere."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, floor: float) -> torch.Tensor:
        return x.clamp_min(floor)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return grad_out, None


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
            ``forward_kl`` only (exactly as verl, except that -inf teacher entries contribute 0, see the module
            docstring). ``reverse_kl`` / ``jsd`` are divergences of the renormalised distributions and are not
            clamped (only floored at ``LOG_PROB_FLOOR``).
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
    student_c = _FloorValue.apply(student_c, LOG_PROB_FLOOR)  # finite value, gradient unchanged
    # zero-probability teacher entries contribute exactly 0; a finite stand-in (0) keeps every intermediate
    # finite, so neither the value nor the backward pass forms 0 * inf
    zero_p = torch.isneginf(teacher_lp)
    teacher_c = torch.where(zero_p, torch.zeros_like(teacher_c), teacher_c)
    terms = teacher_c.exp() * (teacher_c - student_c)
    forward_kl = torch.where(zero_p, torch.zeros_like(terms), terms).sum(-1)

    # renormalise both on the top-k support (the teacher floored first: no +inf reverse KL)
    teacher_f = teacher_lp.clamp_min(LOG_PROB_FLOOR)
    student_hat = student_lp - _safe_lse(student_lp)
    teacher_hat = teacher_f - _safe_lse(teacher_f)
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
