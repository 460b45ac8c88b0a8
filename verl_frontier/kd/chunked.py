"""Full-vocabulary distillation divergences, chunked over tokens (Liger-Kernel ``chunked_loss`` style).

With q = softmax(z_S / tau) (student, differentiable) and p = softmax(z_T / tau) (teacher, constant), per token:

- ``forward_kl``: KL(p || q) = sum_v p_v (log p_v - log q_v);           dL/dz_S = (q - p) / tau
- ``reverse_kl``: KL(q || p) = sum_v q_v (log q_v - log p_v);           dL/dz_S = q (log q - log p - L) / tau
- ``jsd``: generalised JSD(beta) of GKD (Agarwal et al. 2024, arXiv 2306.13649, Eq. 1), TRL's convention
  (see :mod:`verl_frontier.kd.topk`): M = beta p + (1 - beta) q, L = beta KL(p || M) + (1 - beta) KL(q || M);
  dL/dz_S = (1 - beta) q (log q - log M - KL(q || M)) / tau (since dL/dq_v = (1 - beta)(log q_v - log M_v));
  beta = 0 is forward KL and beta = 1 reverse KL. log M is formed in log space,
  log M = logaddexp(log beta + log p, log(1 - beta) + log q), never as log(beta p + (1 - beta) q): in float32
  p_v underflows to 0 (or a subnormal) for log p_v < -87, and log of the rounded mixture would be -inf (or
  far off) while log p_v is finite, giving p_v (log p_v - log M_v) = inf. In log space each term is bounded,
  log p - log M <= -log beta and log q - log M <= -log(1 - beta).

No tau^2 factor is applied (as TRL's ``generalized_jsd_loss``); multiply outside if wanted.

Memory. A naive implementation keeps both [N, V] float32 log-softmax tensors plus several [N, V] elementwise
intermediates alive for backward. :class:`ChunkedDivergenceFunction` instead walks the tokens in chunks of
``chunk_size`` rows; for each chunk it computes both log-softmaxes in float32, the per-token loss and (closed
form above) its gradient w.r.t. the student logits, and writes that gradient into one [N, V] buffer of the
student's dtype. Backward scales the buffer in place by ``grad_output`` (per token) and hands it to autograd,
so the peak is that one buffer (which autograd needs as the student's gradient anyway) plus a few
[chunk_size, V] float32 temporaries. A second backward through the same graph (``retain_graph=True``,
``gradcheck``) recomputes the gradient chunk by chunk instead. Each per-token loss depends only on its own
row, so the gradient for an arbitrary upstream ``grad_output`` [N] is ``grad_output[n] * dL_n/dz_n``.

Accuracy: the softmax normaliser is summed with torch.sum's cascade summation (see :func:`_log_probs`); at
V = 152k this is ~10-40x closer to a float64 reference than float32 ``torch.log_softmax`` on CPU.

Masked logits: columns that are -inf in both models contribute 0 to the loss and get gradient 0; a row that
is -inf everywhere in both has loss 0 and gradient 0. (A column that is -inf in only one model gives the true
value, +inf, where that divergence is infinite, e.g. forward KL with p_v > 0 = q_v; a row -inf everywhere in
only one model has no defined divergence and gives NaN.)
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from verl_frontier.kd.kinds import KINDS

__all__ = [
    "ChunkedDivergenceFunction",
    "DivergenceStrategy",
    "ForwardKL",
    "GeneralizedJSD",
    "ReverseKL",
    "chunked_divergence",
    "make_divergence",
]


def _log_probs(x: torch.Tensor, temperature: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(log_softmax(x / temperature), softmax(x / temperature)) in ``dtype``, both from one exp pass.

    The normaliser is summed with torch.sum's cascade summation: torch.log_softmax's float32 CPU kernel
    accumulates the 150k-term sum exp sequentially and shifts whole rows by ~2e-5 at V = 152k (logsumexp-based:
    ~1e-6). -inf columns stay -inf (probability 0); a row that is -inf everywhere comes out all NaN and is
    repaired by :meth:`ChunkedDivergenceFunction._chunk`.
    """
    z = x.to(dtype)
    fresh = z.data_ptr() != x.data_ptr()
    if temperature != 1.0:
        z = z.div_(temperature) if fresh else z / temperature
        fresh = True
    row_max = z.amax(-1, keepdim=True)
    log_p = z.sub_(row_max) if fresh else z - row_max
    p = log_p.exp()
    total = p.sum(-1, keepdim=True)
    p.div_(total)
    log_p.sub_(total.log_())
    return log_p, p


def _zero_nan_(x: torch.Tensor) -> torch.Tensor:
    """NaN -> 0 in place, infinities kept: the 0 * inf terms of zero-probability columns (p log p := 0)."""
    return x.nan_to_num_(nan=0.0, posinf=math.inf, neginf=-math.inf)


def _write(result: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        return result
    return out.copy_(result)


class DivergenceStrategy:
    """One divergence: per-chunk loss and its gradient w.r.t. the (temperature-scaled) student logits.

    ``loss_and_grad(s, q, t, p, need_grad, out)`` gets the chunk's student log-probs / probs ``s``, ``q`` and
    teacher log-probs / probs ``t``, ``p`` ([c, V] float buffers it may overwrite) and returns
    (loss [c], dloss/dz [c, V] or None). When ``out`` (a [c, V] buffer of the same dtype) is given, the
    gradient is written there.
    """

    name: str = ""

    def loss_and_grad(self, s, q, t, p, need_grad: bool, out: torch.Tensor | None = None):
        raise NotImplementedError


class ForwardKL(DivergenceStrategy):
    """KL(p_T || q_S) = sum p (log p - log q); gradient q - p."""

    name = "forward_kl"

    def loss_and_grad(self, s, q, t, p, need_grad, out=None):
        loss = _zero_nan_(t.sub_(s).mul_(p)).sum(-1)
        if not need_grad:
            return loss, None
        return loss, torch.sub(q, p, out=out) if out is not None else q.sub_(p)


class ReverseKL(DivergenceStrategy):
    """KL(q_S || p_T) = sum q (log q - log p); gradient q (log q - log p) - L q."""

    name = "reverse_kl"

    def loss_and_grad(self, s, q, t, p, need_grad, out=None):
        qd = _zero_nan_(s.sub_(t).mul_(q))  # q (log q - log p), 0 where q = 0
        loss = qd.sum(-1)
        if not need_grad:
            return loss, None
        neg_loss = -loss.unsqueeze(-1)
        return loss, torch.addcmul(qd, q, neg_loss, out=out) if out is not None else qd.addcmul_(q, neg_loss)


class GeneralizedJSD(DivergenceStrategy):
    """beta KL(p || M) + (1 - beta) KL(q || M), M = beta p + (1 - beta) q; beta = 0 / 1: forward / reverse KL."""

    name = "jsd"

    def __init__(self, beta: float = 0.5):
        beta = float(beta)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"jsd beta must lie in [0, 1], got {beta}")
        self.beta = beta
        self._endpoint = ForwardKL() if beta == 0.0 else ReverseKL() if beta == 1.0 else None

    def loss_and_grad(self, s, q, t, p, need_grad, out=None):
        if self._endpoint is not None:
            return self._endpoint.loss_and_grad(s, q, t, p, need_grad, out)
        beta = self.beta
        # log M = logaddexp(log beta + log p, log(1 - beta) + log q), in log space: a probability that underflows
        # (p_v = 0 in float32 while log p_v is finite) still gives a finite log M_v, so log p - log M
        # <= -log beta and log q - log M <= -log(1 - beta) stay bounded (never log p - (-inf) = inf)
        log_m = torch.add(s, math.log1p(-beta))
        log_m = torch.logaddexp(log_m, torch.add(t, math.log(beta)), out=log_m)  # -inf only where p = q = 0
        kl_t = _zero_nan_(t.sub_(log_m).mul_(p)).sum(-1)  # KL(p || M)
        qd = _zero_nan_(s.sub_(log_m).mul_(q))  # q (log q - log M), 0 where q = 0
        kl_s = qd.sum(-1)  # KL(q || M)
        loss = beta * kl_t + (1.0 - beta) * kl_s
        if not need_grad:
            return loss, None
        # (1 - beta) (q (log q - log M) - KL(q || M) q)
        grad = qd.mul_(1.0 - beta).addcmul_(q, kl_s.unsqueeze(-1), value=-(1.0 - beta))
        return loss, _write(grad, out)


def make_divergence(kind: str, beta: float = 0.5) -> DivergenceStrategy:
    if kind == "forward_kl":
        return ForwardKL()
    if kind == "reverse_kl":
        return ReverseKL()
    if kind == "jsd":
        return GeneralizedJSD(beta)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


class ChunkedDivergenceFunction(torch.autograd.Function):
    """Per-token divergence [N] of student logits [N, V] from teacher logits [N, V], chunked over N.

    ``apply(student, teacher, strategy, chunk_size, temperature, compute_grad)``; the teacher gets no gradient.
    """

    @staticmethod
    def _chunk(student, teacher, strategy, start, stop, temperature, dtype, need_grad, out=None):
        """Loss [c] and gradient [c, V] (into ``out`` when given) of rows start:stop."""
        s, q = _log_probs(student[start:stop], temperature, dtype)
        t, p = _log_probs(teacher[start:stop], temperature, dtype)
        dead = torch.isnan(s[:, 0]) | torch.isnan(t[:, 0])  # rows that are -inf everywhere come out all NaN
        direct = out is not None and out.dtype == dtype
        loss, grad = strategy.loss_and_grad(s, q, t, p, need_grad, out if direct else None)
        if need_grad:
            if temperature != 1.0:
                grad.div_(temperature)
            if out is not None and not direct:
                grad = out.copy_(grad)
        if bool(dead.any()):
            # masked tokens (-inf everywhere in both models): loss 0, gradient 0; a token masked in only one
            # model (or NaN logits) has no defined divergence: NaN
            rows = dead.nonzero().reshape(-1)
            both = torch.isneginf(student[start:stop][rows]).all(-1) & torch.isneginf(teacher[start:stop][rows]).all(-1)
            fill = torch.where(both, 0.0, math.nan).to(loss.dtype)
            loss[rows] = fill
            if need_grad:
                grad[rows] = fill.unsqueeze(-1).to(grad.dtype).expand(-1, grad.shape[-1])
        return loss, grad

    @staticmethod
    def forward(ctx, student, teacher, strategy, chunk_size, temperature, compute_grad):
        n_rows = student.shape[0]
        dtype = torch.float64 if student.dtype == torch.float64 else torch.float32
        losses = torch.empty(n_rows, dtype=dtype, device=student.device)
        grad_store = torch.empty_like(student) if compute_grad else None
        for start in range(0, n_rows, chunk_size):
            stop = min(start + chunk_size, n_rows)
            out = grad_store[start:stop] if compute_grad else None
            loss, _ = ChunkedDivergenceFunction._chunk(
                student, teacher, strategy, start, stop, temperature, dtype, compute_grad, out
            )
            losses[start:stop] = loss
        ctx.save_for_backward(student, teacher)
        ctx.grad_store = grad_store
        ctx.strategy, ctx.chunk_size, ctx.temperature, ctx.dtype = strategy, chunk_size, temperature, dtype
        return losses

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        grad_output = grad_output.reshape(-1, 1)
        if ctx.grad_store is not None:  # first backward: scale the stored gradient in place and hand it over
            grad, ctx.grad_store = ctx.grad_store, None
            if not bool((grad_output == 1).all()):
                grad.mul_(grad_output.to(grad.dtype))
            return grad, None, None, None, None, None
        student, teacher = ctx.saved_tensors  # repeated backward (retain_graph / gradcheck): recompute
        grad = torch.empty_like(student)
        for start in range(0, student.shape[0], ctx.chunk_size):
            stop = min(start + ctx.chunk_size, student.shape[0])
            _, chunk_grad = ChunkedDivergenceFunction._chunk(
                student, teacher, ctx.strategy, start, stop, ctx.temperature, ctx.dtype, True
            )
            grad[start:stop] = chunk_grad.mul_(grad_output[start:stop].to(chunk_grad.dtype))
        return grad, None, None, None, None, None


def chunked_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    kind: str = "forward_kl",
    beta: float = 0.5,
    chunk_size: int = 1024,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-token full-vocabulary divergence between student and teacher logits.

    Args:
        student_logits: [N, V] (or [..., V]); bf16/fp16/fp32/fp64; computed in float32 (float64 stays float64).
        teacher_logits: same shape; treated as a constant (detached).
        kind: "forward_kl" (KL(T || S)), "reverse_kl" (KL(S || T)) or "jsd" (generalised JSD(beta), TRL).
        beta: the JSD's beta in [0, 1] (ignored otherwise).
        chunk_size: tokens per chunk (memory/speed only; the result does not depend on it).
        temperature: both models' logits are divided by it (no tau^2 rescaling).

    Returns:
        [N] (or [...]) per-token losses, float32 (float64 for float64 inputs), differentiable w.r.t.
        ``student_logits`` for any upstream gradient.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher_logits {tuple(teacher_logits.shape)} differ"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    strategy = make_divergence(kind, beta)
    lead_shape, vocab = student_logits.shape[:-1], student_logits.shape[-1]
    student = student_logits.reshape(-1, vocab)
    teacher = teacher_logits.detach().reshape(-1, vocab)
    compute_grad = torch.is_grad_enabled() and student.requires_grad
    losses = ChunkedDivergenceFunction.apply(
        student, teacher, strategy, int(chunk_size), float(temperature), compute_grad
    )
    return losses.reshape(lead_shape)
