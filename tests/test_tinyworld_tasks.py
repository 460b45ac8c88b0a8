"""Task family, tokenizer and reward function of the tiny world (no training)."""

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_frontier.tinyworld import tasks
from verl_frontier.tinyworld.reward import compute_score, extract_answer
from verl_frontier.tinyworld.tokenizer import build_tokenizer


@pytest.mark.parametrize("k,d", [(2, 1), (4, 1), (6, 1), (3, 2)])
def test_problems_are_consistent(k, d):
    rng = random.Random(k * 10 + d)
    for _ in range(200):
        p = tasks.sample_problem(rng, k, d)
        assert p.num_operands == k and len(p.ops) == k - 1
        assert all(len(str(x)) == d for x in p.operands)
        assert min(p.totals()) >= 0
        assert eval(p.expression) == p.answer  # noqa: S307 - our own digits and +/- only
        for style in tasks.STYLES:
            resp = tasks.response_text(p, style)
            assert extract_answer(resp) == p.answer
            for a, op, b, c in re.findall(r"(\d+)([+-])(\d+)=(\d+)", resp):
                assert (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(c)


def test_styles_and_example():
    p = tasks.Problem((3, 5, 2, 7), ("+", "-", "+"), 1)
    assert tasks.prompt_text(p, "concise") == "Compute 3+5-2+7. Be concise."
    assert tasks.prompt_text(p, "verbose") == "Compute 3+5-2+7."
    assert tasks.response_text(p, "concise") == "3+5=8. 8-2=6. 6+7=13. Answer: 13"
    v = tasks.response_text(p, "verbose")
    assert v.count("Check:") == 3 and v.endswith("Answer: 13")
    assert 2.5 < len(v) / len(tasks.response_text(p, "concise")) < 4.5


def test_train_test_split_is_disjoint():
    rng = random.Random(0)
    train = {tasks.sample_split_problem(rng, 3, 1, "train").expression for _ in range(500)}
    test = {tasks.sample_split_problem(rng, 3, 1, "test").expression for _ in range(200)}
    assert train and test and not (train & test)
    assert all(tasks.is_test_problem(e) for e in test)


def test_row_format():
    row = tasks.make_row(tasks.Problem((3, 5), ("+",), 1), "concise", "test", 7)
    assert row["prompt"] == [{"role": "user", "content": "Compute 3+5. Be concise."}]
    assert row["reward_model"] == {"style": "rule", "ground_truth": "8"}
    assert row["extra_info"]["split"] == "test" and row["extra_info"]["index"] == 7
    assert row["extra_info"]["style"] == "concise" and row["extra_info"]["num_operands"] == 2


def test_tokenizer_chat_template_roundtrip(tmp_path):
    tok = build_tokenizer()
    msgs = [{"role": "user", "content": "Compute 3+5-2+7. Be concise."}]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == "<|user|>Compute 3+5-2+7. Be concise.<|endoftext|><|assistant|>"
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert ids[-1] == tok.convert_tokens_to_ids("<|assistant|>")
    assert tok.unk_token_id not in ids
    resp = "3+5=8. Answer: 8"
    enc = tok(resp + tok.eos_token, add_special_tokens=False)["input_ids"]
    assert len(enc) == len(resp) + 1 and enc[-1] == tok.eos_token_id
    assert tok.decode(enc, skip_special_tokens=True) == resp
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    t2 = AutoTokenizer.from_pretrained(tmp_path)
    assert len(t2) == len(tok) and t2.eos_token_id == tok.eos_token_id and t2.pad_token_id == tok.pad_token_id
    assert t2.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == text


@pytest.mark.parametrize(
    "text,truth,score",
    [
        ("3+5=8. Answer: 8", "8", 1.0),
        ("3+5=8. Answer: 8<|endoftext|>", "8", 1.0),
        ("Answer: 8 and more text after it", "8", 1.0),
        ("Answer: 7. Hmm. Answer: 8", "8", 1.0),
        ("Answer: 8. Answer: 7", "8", 0.0),
        ("Answer: 80", "8", 0.0),
        ("Answer:8", 8, 1.0),
        ("Answer: -3", "-3", 1.0),
        ("the answer is 8", "8", 0.0),
        ("", "8", 0.0),
        ("Answer: ", "8", 0.0),
        ("Answer: 8", "eight", 0.0),
        ("Answer: 8", None, 0.0),
        (None, "8", 0.0),
        ("Answer: " + "9" * 5000, "9", 0.0),
    ],
)
def test_reward_cases(text, truth, score):
    r = compute_score("tinyworld/arith", text, truth)
    assert r["score"] == score and r["acc"] == score
    assert set(r) >= {"score", "acc", "format_ok", "response_chars"}
    assert all(isinstance(v, float) for v in r.values())


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(st.text(), st.binary(), st.integers(), st.none()),
    st.one_of(st.text(), st.integers(), st.none(), st.floats()),
)
def test_reward_never_raises(solution, truth):
    r = compute_score("tinyworld/arith", solution, truth, extra_info={"x": 1})
    assert r["score"] in (0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(10**6), 10**6), st.text(max_size=30))
def test_reward_finds_any_int_answer(n, junk):
    assert (
        compute_score("d", f"{junk} Answer: {n}", str(n))["score"] == 1.0
        or re.search(r"\d$", junk + " Answer: ") is None
    )
