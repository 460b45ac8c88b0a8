"""Distilling the Essence's loss (fmchisel ``distillation/models.py``), per token t of a selected segment:

    l_t = lam * CE_t + (1 - lam) * FKL_t,   CE_t = -log q(y_t),   FKL_t = sum_v p_v (log p_v - log q_v)

with q the student, p the teacher (temperature 1) on the fixed, teacher-written sequence y; token-mean over
the mask. fmchisel writes (1 - ratio) CE + ratio KD with ratio = 0.5; ``lam`` here is 1 - ratio. No verl
imports: the verl loss (verl_plugin.py) gets FKL_t from verl's top-k logits processor (top-k = the
vocabulary is the full-vocabulary KL) and CE_t from the student's log-probs.
"""

from __future__ import annotations

import torch

from verl_frontier.kd.chunked import chunked_divergence


def essence_token_loss(student_log_probs: torch.Tensor, forward_kl: torch.Tensor, ce_weight: float) -> torch.Tensor:
    """Per-token ``lam * (-log q(y_t)) + (1 - lam) * FKL_t``; both inputs (bs, T), output (bs, T)."""
    return ce_weight * (-student_log_probs) + (1.0 - ce_weight) * forward_kl


def masked_token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(values * mask) / max(sum(mask), 1)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def essence_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    ce_weight: float = 0.5,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Full-vocabulary loss of one batch, token-mean over ``mask``.

    student_logits, teacher_logits: (N, V) logits predicting ``targets`` (N,); mask: (N,) 0/1 (segment and
    truncation mask). Forward KL through the chunked full-vocabulary kernel shared with Paced/OPSDC.
    """
    log_q = torch.log_softmax(student_logits.float(), dim=-1)
    student_log_probs = log_q.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    fkl = chunked_divergence(student_logits, teacher_logits.detach(), kind="forward_kl", chunk_size=chunk_size)
    return masked_token_mean(essence_token_loss(student_log_probs, fkl, ce_weight), mask)
