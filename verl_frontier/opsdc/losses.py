"""OPSDC per-token losses (arXiv 2603.05433, Eq. L(theta)).

    L(theta) = E_{x, y ~ pi_theta(.|x)} (1/|y|) sum_t KL( pi_theta(. | x, y_<t) || pi_theta_bar(. | x, c, y_<t) )

per-token reverse KL over the full vocabulary at T = 1, token-mean, no gradient through the teacher. Forward KL
and the generalised JSD (beta) are selectable for the paper's ablation. The full-vocabulary divergences are
:func:`verl_frontier.kd.chunked.chunked_divergence` (chunked over tokens, float32); the top-k variants keep the
teacher's k most likely tokens per position and use :func:`verl_frontier.kd.topk.topk_divergences` (reverse KL
and JSD renormalised over the teacher's top-k support; forward KL = verl's ``forward_kl_topk``).

Shapes: student_logits [N, V] (response positions only, requires grad), teacher_logits [N, V]; outputs [N].
"""

from __future__ import annotations

import torch

from verl_frontier.kd.kinds import KINDS


def full_vocab_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    kind: str = "reverse_kl",
    beta: float = 0.5,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Per-token divergence [N] between student and (detached) teacher logits over the whole vocabulary."""
    from verl_frontier.kd.chunked import chunked_divergence

    if kind not in KINDS:
        raise ValueError(f"opsdc: unknown divergence {kind!r}; expected one of {KINDS}")
    return chunked_divergence(student_logits, teacher_logits.detach(), kind=kind, beta=beta, chunk_size=chunk_size)


def topk_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    k: int,
    kind: str = "reverse_kl",
    beta: float = 0.5,
    chunk_size: int = 1024,
) -> dict[str, torch.Tensor]:
    """Per-token divergence on the teacher's top-k support. Returns {"loss", "student_mass", "teacher_mass"},
    each [N]."""
    from verl_frontier.kd.topk import topk_divergences

    if kind not in KINDS:
        raise ValueError(f"opsdc: unknown divergence {kind!r}; expected one of {KINDS}")
    with torch.no_grad():
        teacher_lp = torch.log_softmax(teacher_logits.detach().float(), dim=-1)
        top_lp, top_ids = teacher_lp.topk(int(k), dim=-1)
    out = topk_divergences(
        student_logits, top_lp, top_ids, jsd_beta=beta if kind == "jsd" else None, chunk_size=chunk_size
    )
    return {"loss": out[kind], "student_mass": out["student_mass"], "teacher_mass": out["teacher_mass"]}
