"""The tiny world's task family: multi-step integer arithmetic with a worked chain of thought.

"Compute 3+5-2+7."  ->  "3+5=8. 8-2=6. 6+7=13. Answer: 13"

Difficulty is the number of operands ``k`` (and the operand digit count ``d``); the running total is
kept >= 0. Two reasoning styles, selected by an instruction in the prompt:

* ``verbose`` (the default, no instruction): restates the problem, re-checks every step with the
  inverse operation and restates the result (about 3x longer than concise);
* ``concise`` (prompt ends with "Be concise."): one equation per step.

Held-out problems: a problem belongs to the test side iff a hash of its expression falls in the
test bucket (``is_test_problem``), so train and test never share an expression, for every seed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

DATA_SOURCE = "tinyworld/arith"
ABILITY = "math"
CONCISE_INSTRUCTION = "Be concise."
STYLES = ("concise", "verbose")
TEST_BUCKETS = 8  # 1 in TEST_BUCKETS expressions is reserved for the test side


@dataclass(frozen=True)
class Problem:
    operands: tuple[int, ...]
    ops: tuple[str, ...]  # len(operands) - 1 entries, each "+" or "-"
    digits: int

    @property
    def num_operands(self) -> int:
        return len(self.operands)

    @property
    def expression(self) -> str:
        out = str(self.operands[0])
        for op, x in zip(self.ops, self.operands[1:]):
            out += f"{op}{x}"
        return out

    def totals(self) -> list[int]:
        t = [self.operands[0]]
        for op, x in zip(self.ops, self.operands[1:]):
            t.append(t[-1] + x if op == "+" else t[-1] - x)
        return t

    @property
    def answer(self) -> int:
        return self.totals()[-1]


def is_test_problem(expression: str) -> bool:
    h = hashlib.sha256(expression.encode()).digest()
    return h[0] % TEST_BUCKETS == 0


def sample_problem(rng: random.Random, num_operands: int, digits: int = 1) -> Problem:
    """Random problem with ``num_operands`` operands of exactly ``digits`` digits (1-digit: 0..9)."""
    lo = 0 if digits == 1 else 10 ** (digits - 1)
    hi = 10**digits - 1
    first = rng.randint(lo, hi)
    operands, ops, total = [first], [], first
    for _ in range(num_operands - 1):
        x = rng.randint(lo, hi)
        if x <= total and rng.random() < 0.5:
            op = "-"
            total -= x
        else:
            op = "+"
            total += x
        operands.append(x)
        ops.append(op)
    return Problem(tuple(operands), tuple(ops), digits)


def sample_split_problem(rng: random.Random, num_operands: int, digits: int, split: str) -> Problem:
    """Rejection-sample a problem on the requested side of the train/test split."""
    want_test = split == "test"
    for _ in range(10_000):
        p = sample_problem(rng, num_operands, digits)
        if is_test_problem(p.expression) == want_test:
            return p
    raise RuntimeError(f"could not sample a {split} problem with k={num_operands}, d={digits}")


def prompt_text(problem: Problem, style: str) -> str:
    base = f"Compute {problem.expression}."
    if style == "concise":
        return f"{base} {CONCISE_INSTRUCTION}"
    if style == "verbose":
        return base
    raise ValueError(f"unknown style {style!r}")


def response_text(problem: Problem, style: str) -> str:
    t = problem.totals()
    steps = []
    for i, (op, x) in enumerate(zip(problem.ops, problem.operands[1:])):
        a, b = t[i], t[i + 1]
        step = f"{a}{op}{x}={b}."
        if style == "verbose":
            inv = "-" if op == "+" else "+"
            step += f" Check: {b}{inv}{x}={a}."
        steps.append(step)
    if style == "concise":
        return " ".join(steps) + f" Answer: {problem.answer}"
    if style == "verbose":
        return (
            f"We need {problem.expression}. "
            + " ".join(steps)
            + f" So the result is {problem.answer}. Answer: {problem.answer}"
        )
    raise ValueError(f"unknown style {style!r}")


def difficulty_level(num_operands: int, digits: int) -> int:
    """A single ordinal difficulty: 1 for 2 one-digit operands, growing with k and d."""
    return (num_operands - 1) + 4 * (digits - 1)


def make_row(problem: Problem, style: str, split: str, index: int) -> dict:
    """One row in verl's parquet format."""
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": prompt_text(problem, style)}],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": str(problem.answer)},
        "extra_info": {
            "split": split,
            "index": index,
            "num_operands": problem.num_operands,
            "digits": problem.digits,
            "difficulty": difficulty_level(problem.num_operands, problem.digits),
            "style": style,
            "expression": problem.expression,
            "reference": response_text(problem, style),
        },
    }
