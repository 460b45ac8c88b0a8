"""Segments of a distillation sequence and first-r truncation (Distilling the Essence, §5 of the notes).

A training sequence is ``[prompt][chain of thought][answer]`` (the chat-templated prompt including the
generation prompt, then the response). The answer starts at the first occurrence of the answer marker in the
response (``"Answer:"`` in the tiny world, ``"</think>"`` for thinking models: the marker token opens the
answer segment); with no marker the whole response is chain of thought.

fmchisel's modes map to segment sets: ``promptcotAns`` = {prompt, cot, answer} (default), ``cotAns``,
``ans``, ``promptAns``, ``cot``, ``promptCot``.

Truncation keeps the first ``keep = max(1, int(L * r))`` tokens (fmchisel ``datasets.py``). ``scope``:

- ``"sequence"`` (the paper): L = prompt + response tokens, the cut can fall inside the prompt;
- ``"response"``: L = response tokens only and the prompt is always kept (for worlds where the prompt is
  not negligible next to the reasoning, e.g. the tiny world's 40-token prompts vs 30-120-token answers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SEGMENTS = ("prompt", "cot", "answer")
PROMPT, COT, ANSWER = 0, 1, 2
SCOPES = ("sequence", "response")

#: fmchisel ``section_inclusion`` modes -> segment sets
FMCHISEL_MODES: dict[str, frozenset[str]] = {
    "promptcotAns": frozenset(SEGMENTS),
    "cotAns": frozenset({"cot", "answer"}),
    "ans": frozenset({"answer"}),
    "promptAns": frozenset({"prompt", "answer"}),
    "cot": frozenset({"cot"}),
    "promptCot": frozenset({"prompt", "cot"}),
}


def parse_segments(spec: str | Iterable[str]) -> frozenset[str]:
    """``["cot", "answer"]``, ``"cot,answer"``, ``"all"`` or an fmchisel mode -> a non-empty segment set.
    Raises ValueError naming the unknown segment."""
    if isinstance(spec, str):
        if spec in FMCHISEL_MODES:
            return FMCHISEL_MODES[spec]
        if spec == "all":
            return frozenset(SEGMENTS)
        names = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        names = [str(s).strip() for s in spec]
    unknown = [n for n in names if n not in SEGMENTS]
    if unknown:
        raise ValueError(f"unknown segment {unknown[0]!r}: choose from {list(SEGMENTS)} (or an fmchisel mode)")
    if not names:
        raise ValueError(f"no segment selected: choose one or more of {list(SEGMENTS)}")
    return frozenset(names)


def check_truncate_ratio(ratio: float) -> float:
    """r must lie in (0, 1]."""
    r = float(ratio)
    if not 0.0 < r <= 1.0:
        raise ValueError(f"truncate_ratio must be in (0, 1], got {ratio!r}")
    return r


def truncated_length(length: int, ratio: float) -> int:
    """fmchisel's ``keep = max(1, int(length * ratio))`` (0 for an empty sequence)."""
    r = check_truncate_ratio(ratio)
    return 0 if length <= 0 else max(1, int(length * r))


def find_subsequence(sequence: Sequence[int], pattern: Sequence[int], start: int = 0) -> int:
    """Index of the first occurrence of ``pattern`` in ``sequence`` at or after ``start``, or -1."""
    m = len(pattern)
    if m == 0:
        return -1
    first = pattern[0]
    for i in range(start, len(sequence) - m + 1):
        if sequence[i] == first and list(sequence[i : i + m]) == list(pattern):
            return i
    return -1


def segment_labels(prompt_len: int, response_ids: Sequence[int], answer_marker_ids: Sequence[int]) -> list[int]:
    """Per-token segment label of ``[prompt][response]``: PROMPT, COT or ANSWER (length prompt_len + len(response))."""
    at = find_subsequence(response_ids, answer_marker_ids)
    cot_len = len(response_ids) if at < 0 else at
    return [PROMPT] * prompt_len + [COT] * cot_len + [ANSWER] * (len(response_ids) - cot_len)


def keep_length(prompt_len: int, response_len: int, ratio: float, scope: str = "sequence") -> int:
    """How many tokens of ``[prompt][response]`` the first-r truncation keeps."""
    if scope == "sequence":
        return truncated_length(prompt_len + response_len, ratio)
    if scope == "response":
        return prompt_len + truncated_length(response_len, ratio)
    raise ValueError(f"unknown truncation scope {scope!r}: choose from {list(SCOPES)}")


def segment_mask(
    prompt_len: int,
    response_ids: Sequence[int],
    answer_marker_ids: Sequence[int],
    segments: Iterable[str],
    ratio: float = 1.0,
    scope: str = "sequence",
) -> list[int]:
    """0/1 mask over ``[prompt][response]`` (length prompt_len + len(response)): 1 where the token's segment is
    selected and the token lies in the first ``keep_length`` tokens."""
    labels = segment_labels(prompt_len, response_ids, answer_marker_ids)
    return mask_from_labels(labels, segments, keep_length(prompt_len, len(response_ids), ratio, scope))


def mask_from_labels(labels: Sequence[int], segments: Iterable[str], keep: int) -> list[int]:
    """1 where the token's segment label is selected and the token is among the first ``keep``."""
    chosen = {SEGMENTS.index(s) for s in parse_segments(list(segments))}
    return [int(label in chosen and i < keep) for i, label in enumerate(labels)]


def replay_layout(
    prompt_ids: Sequence[int],
    cot_ids: Sequence[int],
    answer_ids: Sequence[int],
    segments: Iterable[str],
    ratio: float,
    scope: str,
    max_response_length: int,
) -> tuple[list[int], list[int], list[int]]:
    """(verl prompt ids, response ids, response mask) of one replayed ``[prompt][cot][answer]`` sequence cut to
    its first ``keep_length`` tokens. With the prompt segment selected, verl's prompt is the first token only
    (so prompt tokens are predicted and trained); else it is the whole prompt. A cut inside an untrained
    prompt leaves one placeholder response token with mask 0."""
    full = [*prompt_ids, *cot_ids, *answer_ids]
    labels = [PROMPT] * len(prompt_ids) + [COT] * len(cot_ids) + [ANSWER] * len(answer_ids)
    keep = keep_length(len(prompt_ids), len(cot_ids) + len(answer_ids), ratio, scope)
    selected = mask_from_labels(labels[:keep], segments, keep)
    split = 1 if "prompt" in parse_segments(list(segments)) else min(len(prompt_ids), keep)
    split = max(1, min(split, len(full) - 1))
    response, mask = full[split:keep], selected[split:keep]
    if not response:
        response, mask = full[split : split + 1], [0]
    return full[:split], response[:max_response_length], mask[:max_response_length]
