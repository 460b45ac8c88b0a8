"""Rule reward for the tiny world, in verl's ``compute_score`` signature.

Use in verl: ``reward.custom_reward_function.path=pkg://verl_frontier.tinyworld.reward``
(name ``compute_score``). The last ``Answer: N`` in the response is compared with the integer
ground truth; anything after the number (eos text, more words) is ignored. Malformed input scores 0
and never raises.
"""

from __future__ import annotations

import re

_ANSWER_RE = re.compile(r"Answer:\s*([+-]?\d{1,60})(?!\d)")
_MAX_CHARS = 100_000


def extract_answer(solution_str) -> int | None:
    """The integer after the last ``Answer:`` marker, or ``None``."""
    try:
        if not isinstance(solution_str, str):
            solution_str = (
                solution_str.decode("utf-8", "replace") if isinstance(solution_str, bytes) else str(solution_str)
            )
        text = solution_str[-_MAX_CHARS:]
        matches = _ANSWER_RE.findall(text)
        if not matches:
            return None
        return int(matches[-1])
    except Exception:
        return None


def _parse_truth(ground_truth) -> int | None:
    try:
        if isinstance(ground_truth, bool):
            return None
        if isinstance(ground_truth, int):
            return ground_truth
        if isinstance(ground_truth, float):
            return int(ground_truth) if ground_truth.is_integer() else None
        if isinstance(ground_truth, (list, tuple)) and ground_truth:
            return _parse_truth(ground_truth[0])
        return int(str(ground_truth).strip())
    except Exception:
        return None


def compute_score(data_source=None, solution_str="", ground_truth=None, extra_info=None, **kwargs) -> dict:
    """``{"score": 1.0|0.0, "acc": same, "format_ok": 1.0 if an answer was found,
    "response_chars": len(solution_str)}``; all values are floats (verl averages them)."""
    pred = extract_answer(solution_str)
    truth = _parse_truth(ground_truth)
    correct = pred is not None and truth is not None and pred == truth
    try:
        n_chars = float(len(solution_str))
    except Exception:
        n_chars = 0.0
    score = 1.0 if correct else 0.0
    return {"score": score, "acc": score, "format_ok": 0.0 if pred is None else 1.0, "response_chars": n_chars}
