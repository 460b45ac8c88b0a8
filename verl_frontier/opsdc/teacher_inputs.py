"""OPSDC teacher inputs: re-prompt the student's prompt with a conciseness instruction, and realign positions.

The teacher pi_theta_bar(. | x, c, y_<t) scores the student's own response ids y after its own, longer, prompt
(x with the instruction c). With student prompt length P and teacher prompt length P' (per sample), response
token t (0-based) of y is predicted by the logits at sequence position P - 1 + t under the student and
P' - 1 + t under the teacher; :func:`realignment` returns both maps, :func:`build_teacher_batch` the padded
teacher batch and the (row, column) of every response token in its kept logits.

Re-prompting works on token ids (the actor worker sees ids, not text), in one of three modes:

* ``append``:  ``head + content + [sep + c] + tail``  (instruction at the end of the last user turn; the tiny
  world's concise prompts are "<problem> Be concise.");
* ``prepend``: ``head + [c + sep] + content + tail``  (instruction at the start of the user turn);
* ``replace``: the first occurrence of the ids of ``replace_text`` is replaced by the instruction ids (the
  paper swaps the DAPO student instruction "Solve ... step by step." for the concise one).

``head``/``tail`` are the chat template's token ids around a single user message (:func:`chat_anchors`). The
instruction is tokenised on its own, so the teacher prompt's ids can differ from a re-tokenisation of the
re-prompted text at the splice (BPE merges across the boundary); the teacher is conditioned on the
instruction either way, and the response ids are never re-tokenised.

No verl imports; tensors are CPU/any-device torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

#: The paper's teacher instructions (arXiv 2603.05433). "uniform" is the original OPSDC instruction,
#: "difficulty_aware" the revised paper's (CRISP v2) default.
PAPER_INSTRUCTIONS: dict[str, str] = {
    "uniform": (
        "Solve the following math problem concisely and correctly. Be direct \u2014 avoid unnecessary "
        "elaboration, redundant steps, or restating the problem. Focus only on the key reasoning steps "
        "needed to reach the answer."
    ),
    "difficulty_aware": (
        "Solve the following math problem concisely and correctly. Prioritize a correct final answer above "
        "brevity. For straightforward problems, be direct: avoid unnecessary elaboration, redundant steps, or "
        "restating the problem. For difficult or multi-step problems, do NOT over-compress: keep every "
        "reasoning step needed for correctness, including case analysis, edge cases, and a question check of "
        "the final answer. Never omit a step that the answer depends on."
    ),
}
#: The DAPO-Math-17k student instruction the paper's teacher prompt replaces.
DAPO_STUDENT_INSTRUCTION = "Solve the following math problem step by step."
MODES = ("append", "prepend", "replace")
_SENTINEL = "OPSDC_SENTINEL_5e1c"


def resolve_instruction(instruction: str) -> str:
    """A preset name of :data:`PAPER_INSTRUCTIONS` or the instruction text itself."""
    return PAPER_INSTRUCTIONS.get(instruction, instruction)


@dataclass(frozen=True)
class ChatAnchors:
    """Token ids the chat template puts before (``head``) and after (``tail``) a lone user message's content
    (``tail`` includes the generation prompt)."""

    head_ids: tuple[int, ...]
    tail_ids: tuple[int, ...]


def chat_anchors(tokenizer, apply_chat_template_kwargs: dict | None = None) -> ChatAnchors:
    """Probe ``tokenizer``'s chat template with one user message to find its head and tail token ids."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": _SENTINEL}],
        tokenize=False,
        add_generation_prompt=True,
        **(apply_chat_template_kwargs or {}),
    )
    if text.count(_SENTINEL) != 1:
        raise ValueError("opsdc: cannot locate the user content in the tokenizer's chat template")
    head, tail = text.split(_SENTINEL)
    encode = lambda s: tuple(tokenizer.encode(s, add_special_tokens=False)) if s else ()  # noqa: E731
    return ChatAnchors(head_ids=encode(head), tail_ids=encode(tail))


@dataclass(frozen=True)
class Reprompter:
    """Token-level re-prompting (see the module docstring). Build it once per tokenizer with :meth:`create`."""

    mode: str
    instruction_ids: tuple[int, ...]
    anchors: ChatAnchors
    replace_ids: tuple[int, ...] = ()

    @classmethod
    def create(
        cls,
        tokenizer,
        instruction: str,
        mode: str = "prepend",
        separator: str = "\n\n",
        replace_text: str | None = None,
        apply_chat_template_kwargs: dict | None = None,
    ) -> Reprompter:
        if mode not in MODES:
            raise ValueError(f"opsdc: unknown re-prompt mode {mode!r}; expected one of {MODES}")
        text = resolve_instruction(instruction)
        if mode == "append":
            text = separator + text
        elif mode == "prepend":
            text = text + separator
        replace_ids: tuple[int, ...] = ()
        if mode == "replace":
            if not replace_text:
                raise ValueError("opsdc: mode 'replace' needs replace_text")
            replace_ids = tuple(tokenizer.encode(replace_text, add_special_tokens=False))
        return cls(
            mode=mode,
            instruction_ids=tuple(tokenizer.encode(text, add_special_tokens=False)),
            anchors=chat_anchors(tokenizer, apply_chat_template_kwargs),
            replace_ids=replace_ids,
        )

    def __call__(self, prompt_ids: Sequence[int]) -> tuple[list[int], bool]:
        return reprompt(
            prompt_ids, self.mode, self.instruction_ids, self.anchors.head_ids, self.anchors.tail_ids, self.replace_ids
        )


def _find(haystack: Sequence[int], needle: Sequence[int]) -> int:
    n = len(needle)
    if n == 0:
        return -1
    first = needle[0]
    for i in range(len(haystack) - n + 1):
        if haystack[i] == first and list(haystack[i : i + n]) == list(needle):
            return i
    return -1


def reprompt(
    prompt_ids: Sequence[int],
    mode: str,
    instruction_ids: Sequence[int],
    head_ids: Sequence[int] = (),
    tail_ids: Sequence[int] = (),
    replace_ids: Sequence[int] = (),
) -> tuple[list[int], bool]:
    """Teacher prompt ids for one student prompt, and whether the anchor was found.

    When the anchor is missing (``prepend``: the prompt does not start with ``head_ids``; ``append``: it does
    not end with ``tail_ids``; ``replace``: ``replace_ids`` does not occur) the student prompt is returned
    unchanged with ``False``: that sample's teacher is the student's own context.
    """
    prompt = [int(t) for t in prompt_ids]
    instr = [int(t) for t in instruction_ids]
    if mode == "prepend":
        h = len(head_ids)
        if prompt[:h] != list(head_ids):
            return prompt, False
        return prompt[:h] + instr + prompt[h:], True
    if mode == "append":
        t = len(tail_ids)
        if t > len(prompt) or (t and prompt[len(prompt) - t :] != list(tail_ids)):
            return prompt, False
        cut = len(prompt) - t
        return prompt[:cut] + instr + prompt[cut:], True
    if mode == "replace":
        i = _find(prompt, replace_ids)
        if i < 0:
            return prompt, False
        return prompt[:i] + instr + prompt[i + len(replace_ids) :], True
    raise ValueError(f"opsdc: unknown re-prompt mode {mode!r}; expected one of {MODES}")


def realignment(
    student_prompt_lens: Sequence[int], teacher_prompt_lens: Sequence[int], response_lens: Sequence[int]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per sample i: positions (in its own unpadded sequence) whose logits predict response tokens 0..R_i-1.

    Returns ``(student_pos, teacher_pos)``, lists of LongTensor [R_i]: ``P_i - 1 + t`` and ``P'_i - 1 + t``.
    """
    student, teacher = [], []
    for p, q, r in zip(student_prompt_lens, teacher_prompt_lens, response_lens, strict=True):
        if p < 1 or q < 1:
            raise ValueError("opsdc: prompts must hold at least one token")
        t = torch.arange(int(r), dtype=torch.long)
        student.append(p - 1 + t)
        teacher.append(q - 1 + t)
    return student, teacher


def student_packed_index(prompt_lens: Sequence[int], response_lens: Sequence[int]) -> torch.Tensor:
    """Indices [N = sum R_i] into the packed (THD) student sequence ``concat_i(prompt_i + response_i)`` of the
    logits that predict each response token, sample-major (the order of :func:`build_teacher_batch`)."""
    out, offset = [], 0
    for p, r in zip(prompt_lens, response_lens, strict=True):
        out.append(offset + p - 1 + torch.arange(int(r), dtype=torch.long))
        offset += int(p) + int(r)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


@dataclass
class TeacherBatch:
    """Padded teacher forward inputs. Every teacher prompt ends at column C (left padding), responses follow
    and are right-padded, so response token t of any row is predicted by the logits at column C - 1 + t; the
    forward keeps only the last ``logits_to_keep = L - C + 1`` positions, in which that is column t.

    input_ids, attention_mask, position_ids: [B, L]; rows, cols: [N] the (row, kept column) of each response
    token, sample-major.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    logits_to_keep: int
    rows: torch.Tensor
    cols: torch.Tensor
    prompt_end: int


def build_teacher_batch(
    teacher_prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int = 0
) -> TeacherBatch:
    if len(teacher_prompts) != len(responses) or not responses:
        raise ValueError("opsdc: need one teacher prompt per response (and at least one)")
    c = max(len(p) for p in teacher_prompts)
    r_max = max(max(len(r) for r in responses), 1)
    b, length = len(responses), c + r_max
    input_ids = torch.full((b, length), int(pad_id), dtype=torch.long)
    mask = torch.zeros((b, length), dtype=torch.long)
    rows, cols = [], []
    for i, (p, r) in enumerate(zip(teacher_prompts, responses, strict=True)):
        if len(p) < 1:
            raise ValueError("opsdc: empty teacher prompt")
        input_ids[i, c - len(p) : c] = torch.as_tensor(list(p), dtype=torch.long)
        input_ids[i, c : c + len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, c - len(p) : c + len(r)] = 1
        rows.append(torch.full((len(r),), i, dtype=torch.long))
        cols.append(torch.arange(len(r), dtype=torch.long))
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    return TeacherBatch(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=position_ids,
        logits_to_keep=r_max + 1,
        rows=torch.cat(rows),
        cols=torch.cat(cols),
        prompt_end=c,
    )
