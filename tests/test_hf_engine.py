"""Tests for verl_cpu.hf_engine.HFGenerationEngine on a tiny random Qwen2 model."""

from __future__ import annotations

import asyncio
import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verl_cpu.hf_engine import HFGenerationEngine, apply_top_k_top_p

CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789 .,!?")
SPECIALS = ["<pad>", "<eos>", "<unk>"]
EOS_ID = 1


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tiny_qwen2) -> str:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny_qwen2")
    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>")),
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
    )
    assert tok.eos_token_id == EOS_ID
    model = tiny_qwen2(
        len(tok),
        seed=1234,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=0.2,  # peaked enough for top-k/top-p, small enough for fp32 noise < 1e-5
        eos_token_id=EOS_ID,
        pad_token_id=0,
        bos_token_id=None,
    )
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def engine(model_dir) -> HFGenerationEngine:
    return HFGenerationEngine(model_dir, batch_wait_ms=2, seed=0)


@pytest.fixture(scope="session")
def chunked_engine(model_dir) -> HFGenerationEngine:
    """Prefills prompts needing prompt log-probs a few columns at a time."""
    return HFGenerationEngine(model_dir, batch_wait_ms=2, prefill_chunk_logits=44 * 4)


@pytest.fixture(params=["whole", "chunked"])
def any_engine(request, engine, chunked_engine) -> HFGenerationEngine:
    return engine if request.param == "whole" else chunked_engine


@pytest.fixture(scope="session")
def ref_model(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def ref_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def run(coro):
    return asyncio.run(coro)


def prompt(n: int, offset: int = 0) -> list[int]:
    return [3 + (7 * i + offset) % len(CHARS) for i in range(n)]


def actor_logprobs(model, prompt_ids, response, temperature):
    """What verl's actor computes: forward on prompt+response, log_softmax(logits / T)."""
    t = temperature if temperature > 0 else 1.0
    logits = ref_logits(model, prompt_ids + response)[len(prompt_ids) - 1 : -1] / t
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(response).unsqueeze(1)).squeeze(1)


# 1. sampled log-probs == actor forward --------------------------------------------------------


@pytest.mark.parametrize(
    "temperature,top_k,top_p",
    [
        (1.0, -1, 1.0),
        (1.0, 5, 0.9),
        (0.7, 5, 0.9),
        (0.7, -1, 0.6),
        (1.3, 10, 1.0),
        (0.0, -1, 1.0),
    ],
)
def test_logprobs_match_forward(engine, ref_model, temperature, top_k, top_p):
    p = prompt(9)
    sp = {
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "max_tokens": 12,
        "logprobs": True,
    }
    res = run(engine.generate(p, sp))
    assert 1 <= len(res.token_ids) == len(res.log_probs) <= 12
    expected = actor_logprobs(ref_model, p, res.token_ids, temperature)
    torch.testing.assert_close(torch.tensor(res.log_probs), expected, atol=1e-5, rtol=0)
    if temperature == 0:
        logits = ref_logits(ref_model, p + res.token_ids)[len(p) - 1 : -1]
        assert logits.argmax(-1).tolist() == res.token_ids


# 2. teacher prompt log-probs ------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 8])
def test_prompt_logprobs_topk(any_engine, ref_model, k):
    p = prompt(15, offset=3)
    res = run(
        any_engine.generate(
            p,
            {
                "max_tokens": 1,
                "temperature": 1.0,
                "prompt_logprobs": k,
                "detokenize": False,
            },
        )
    )
    assert len(res.token_ids) == 1
    ids, lps = res.prompt_logprobs
    assert len(ids) == len(lps) == len(p) and all(len(r) == k for r in ids + lps)
    logp = torch.log_softmax(ref_logits(ref_model, p)[:-1], -1)
    vals, idx = torch.topk(logp, k, dim=-1)
    assert ids[:-1] == idx.tolist()
    torch.testing.assert_close(torch.tensor(lps[:-1]), vals, atol=1e-5, rtol=0)
    assert ids[-1] == [0] * k and lps[-1] == [0.0] * k  # verl's dummy row
    assert res.extra_fields() == {"prompt_ids": ids, "prompt_logprobs": lps}


def test_prompt_logprobs_actual_token(any_engine, ref_model):
    engine = any_engine
    p = prompt(11, offset=5)
    # temperature must not affect prompt log-probs (vLLM computes them on raw logits)
    res = run(engine.generate(p, {"max_tokens": 1, "temperature": 0.5, "prompt_logprobs": 0}))
    ids, lps = res.prompt_logprobs
    assert len(ids) == len(p) and all(len(r) == 1 for r in ids + lps)
    assert [r[0] for r in ids[:-1]] == p[1:]
    logp = torch.log_softmax(ref_logits(ref_model, p)[:-1], -1)
    expected = logp.gather(1, torch.tensor(p[1:]).unsqueeze(1))
    torch.testing.assert_close(torch.tensor(lps[:-1]), expected, atol=1e-5, rtol=0)
    assert ids[-1] == [0] and lps[-1] == [0.0]
    # single-token prompt: only the dummy row
    one = run(engine.generate(p[:1], {"max_tokens": 1, "prompt_logprobs": 2}))
    assert one.prompt_logprobs == ([[0, 0]], [[0.0, 0.0]])
    assert run(engine.generate(p, {"max_tokens": 1})).prompt_logprobs is None


# 3. weight loading ----------------------------------------------------------------------------


def test_load_weights(model_dir, ref_model):
    eng = HFGenerationEngine(model_dir, seed=3)
    p = prompt(7, offset=1)
    sp = {"temperature": 0.8, "top_k": 6, "max_tokens": 10}
    old = run(eng.generate(p, dict(sp)))

    new_model = copy.deepcopy(ref_model)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in new_model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    named = [(n, t.clone().to(torch.bfloat16).float()) for n, t in new_model.named_parameters()]
    with torch.no_grad():  # make the reference hold exactly what was sent
        for (_n, t), param in zip(named, new_model.parameters()):
            param.copy_(t)
    info = eng.load_weights(named + [("not.a.weight", torch.zeros(1))])
    assert info["loaded"] == len(named) and info["missing"] == 0 and info["unexpected"] == 1
    assert info["weight_version"] == eng.weight_version == 1
    # tied embeddings: the lm head follows the embedding
    assert torch.equal(
        eng.model.get_output_embeddings().weight,
        eng.model.get_input_embeddings().weight,
    )

    res = run(eng.generate(p, dict(sp)))
    assert res.weight_version == 1
    expected = actor_logprobs(new_model, p, res.token_ids, 0.8)
    torch.testing.assert_close(torch.tensor(res.log_probs), expected, atol=1e-5, rtol=0)
    stale = actor_logprobs(ref_model, p, res.token_ids, 0.8)
    assert (torch.tensor(res.log_probs) - stale).abs().max() > 1e-2
    assert old.weight_version == 0

    # prefix variations and partial buckets
    info = eng.load_weights([(n.removeprefix("model."), t) for n, t in named[:3]], bump_version=False)
    assert info["loaded"] == 3 and info["unexpected"] == 0 and info["weight_version"] == 1
    with pytest.raises(ValueError, match="shape mismatch"):
        eng.load_weights([(named[0][0], torch.zeros(2, 2))])


# 4. batching, stops, determinism ---------------------------------------------------------------

REQUESTS = [
    (prompt(3), {"temperature": 0, "max_tokens": 9}),
    (prompt(12, 2), {"temperature": 0, "max_tokens": 4}),
    (prompt(1, 4), {"temperature": 0, "max_tokens": 15, "ignore_eos": True}),
    (prompt(7, 9), {"temperature": 0, "max_new_tokens": 6}),
    (prompt(20, 1), {"temperature": 0, "max_tokens": 11, "top_k": 3}),
    (
        prompt(17, 3),
        {"temperature": 1.0, "max_tokens": 1, "prompt_logprobs": 3, "seed": 5},
    ),  # teacher
    (prompt(6, 2), {"temperature": 0, "max_tokens": 5, "prompt_logprobs": 0}),
]
MIXED = [
    (prompt(4), {"temperature": 1.0, "top_k": -1, "max_tokens": 8}),
    (prompt(9, 3), {"temperature": 0.6, "top_k": 4, "top_p": 0.9, "max_tokens": 6}),
    (prompt(2, 8), {"temperature": 0, "max_tokens": 10}),
    (
        prompt(14, 5),
        {"temperature": 1.2, "top_p": 0.7, "max_tokens": 12, "ignore_eos": True},
    ),
    (prompt(6, 6), {"temperature": 0.9, "top_k": 2, "max_tokens": 7}),
]


async def _concurrent(eng, reqs):
    return await asyncio.gather(*(eng.generate(p, dict(sp)) for p, sp in reqs))


async def _sequential(eng, reqs):
    return [await eng.generate(p, dict(sp)) for p, sp in reqs]


def _assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.token_ids == y.token_ids and x.stop_reason == y.stop_reason
        assert (x.prompt_logprobs is None) == (y.prompt_logprobs is None)
        if x.prompt_logprobs is not None:
            assert x.prompt_logprobs[0] == y.prompt_logprobs[0]
            torch.testing.assert_close(
                torch.tensor(x.prompt_logprobs[1]),
                torch.tensor(y.prompt_logprobs[1]),
                atol=1e-5,
                rtol=0,
            )
        torch.testing.assert_close(torch.tensor(x.log_probs), torch.tensor(y.log_probs), atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk_logits", [1 << 27, 44 * 7 * 5])
def test_batched_equals_alone_greedy(model_dir, ref_model, chunk_logits):
    eng = HFGenerationEngine(model_dir, batch_wait_ms=50, max_batch_size=8, prefill_chunk_logits=chunk_logits)
    batched = run(_concurrent(eng, REQUESTS))
    assert eng.num_batches == 1
    alone = run(_sequential(eng, REQUESTS))
    assert eng.num_batches == 1 + len(REQUESTS)
    _assert_same(batched, alone)
    for (p, sp), res in zip(REQUESTS, batched):
        assert len(res.token_ids) <= sp.get("max_tokens", sp.get("max_new_tokens"))
        expected = actor_logprobs(ref_model, p, res.token_ids, sp["temperature"])
        torch.testing.assert_close(torch.tensor(res.log_probs), expected, atol=1e-5, rtol=0)
    assert batched[2].stop_reason == "length" and len(batched[2].token_ids) == 15


def test_batched_equals_alone_mixed_params(model_dir):
    """Per-row temperature/top-k/top-p; same seed and call order give the same samples batched or not."""
    a = HFGenerationEngine(model_dir, batch_wait_ms=50, seed=11)
    b = HFGenerationEngine(model_dir, batch_wait_ms=0, seed=11)
    batched = run(_concurrent(a, MIXED))
    assert a.num_batches == 1
    _assert_same(batched, run(_sequential(b, MIXED)))
    # small max_batch_size splits the work but changes nothing
    c = HFGenerationEngine(model_dir, batch_wait_ms=50, seed=11, max_batch_size=2)
    _assert_same(batched, run(_concurrent(c, MIXED)))
    assert c.num_batches == 3


def test_stop_tokens_and_max_tokens(engine):
    p = prompt(5, 2)
    full = run(engine.generate(p, {"temperature": 0, "max_tokens": 20, "ignore_eos": True}))
    assert full.stop_reason == "length" and len(full.token_ids) == 20
    stop = full.token_ids[4]
    cut = full.token_ids.index(stop) + 1
    res = run(
        engine.generate(
            p,
            {
                "temperature": 0,
                "max_tokens": 20,
                "stop_token_ids": [stop],
                "ignore_eos": True,
            },
        )
    )
    assert res.token_ids == full.token_ids[:cut] and res.stop_reason == "stop"
    assert res.log_probs == pytest.approx(full.log_probs[:cut], abs=1e-6)
    res = run(engine.generate(p, {"temperature": 0, "max_tokens": 3, "ignore_eos": True}))
    assert res.token_ids == full.token_ids[:3] and res.stop_reason == "length"
    assert EOS_ID in engine.eos_token_ids
    # eos stops unless ignored; max_tokens clamps to the context window
    res = run(engine.generate(prompt(500), {"temperature": 0, "max_tokens": 50, "ignore_eos": True}))
    assert len(res.token_ids) == 12


def test_eos_stops(model_dir):
    eng = HFGenerationEngine(model_dir)
    p = prompt(4)
    full = run(eng.generate(p, {"temperature": 0, "max_tokens": 30, "ignore_eos": True}))
    assert len(full.token_ids) == 30
    eng.eos_token_ids = frozenset({full.token_ids[2]})  # pretend this token is the eos
    cut = full.token_ids.index(full.token_ids[2]) + 1
    res = run(eng.generate(p, {"temperature": 0, "max_tokens": 30}))
    assert res.token_ids == full.token_ids[:cut] and res.stop_reason == "stop"
    again = run(eng.generate(p, {"temperature": 0, "max_tokens": 30, "ignore_eos": True}))
    assert again.token_ids == full.token_ids


def test_determinism_and_seed(model_dir, engine):
    p = prompt(6, 4)
    g1 = run(engine.generate(p, {"temperature": 0, "max_tokens": 10}))
    g2 = run(engine.generate(p, {"temperature": 0, "max_tokens": 10}))
    assert g1 == g2
    sp = {"temperature": 1.0, "max_tokens": 16, "ignore_eos": True}
    e1, e2, e3 = (HFGenerationEngine(model_dir, seed=s) for s in (5, 5, 6))
    r1 = run(_sequential(e1, [(p, sp)] * 3))
    r2 = run(_sequential(e2, [(p, sp)] * 3))
    r3 = run(_sequential(e3, [(p, sp)] * 3))
    assert [r.token_ids for r in r1] == [r.token_ids for r in r2]
    assert [r.token_ids for r in r1] != [r.token_ids for r in r3]
    assert len({tuple(r.token_ids) for r in r1}) > 1  # successive requests draw fresh randomness
    # an explicit per-request seed (vLLM's `seed`) pins the sample
    s1 = run(e1.generate(p, dict(sp, seed=42)))
    s3 = run(e3.generate(p, dict(sp, seed=42)))
    assert s1.token_ids == s3.token_ids


def test_sampling_params_validation(engine):
    with pytest.raises(ValueError, match="repetition_penalty"):
        run(engine.generate(prompt(3), {"repetition_penalty": 1.1}))
    res = run(
        engine.generate(
            prompt(3),
            {"repetition_penalty": 1.0, "some_unknown_key": 1, "max_tokens": 2},
        )
    )
    assert 1 <= len(res.token_ids) <= 2
    with pytest.raises(ValueError):
        run(engine.generate(prompt(600), {"max_tokens": 2}))


def test_abort_and_resume(model_dir):
    eng = HFGenerationEngine(model_dir, batch_wait_ms=0)
    long = {"temperature": 1.0, "max_tokens": 400, "ignore_eos": True}

    async def scenario():
        task = asyncio.create_task(eng.generate(prompt(8), long))
        while eng.num_batches == 0:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        info = await eng.abort_all()
        res = await task
        assert info["aborted_count"] == 1
        assert res.stop_reason == "aborted" and len(res.token_ids) < 400
        assert len(res.log_probs) == len(res.token_ids)
        # while paused, new requests park until resume
        parked = asyncio.create_task(eng.generate(prompt(3), {"max_tokens": 2}))
        await asyncio.sleep(0.05)
        assert not parked.done() and eng.paused
        eng.resume()
        assert (await parked).stop_reason in ("stop", "length")
        # reject_new: requests during the pause return aborted at once
        await eng.abort_all(reject_new=True)
        rejected = await eng.generate(prompt(3), {"max_tokens": 2})
        assert rejected.stop_reason == "aborted" and rejected.token_ids == []
        eng.resume()
        await eng.wait_for_drain()
        ok = await asyncio.gather(*(eng.generate(prompt(4, i), {"max_tokens": 3}) for i in range(3)))
        assert all(r.stop_reason != "aborted" for r in ok)
        await eng.wait_for_drain()
        assert eng.num_pending == 0
        await eng.shutdown()

    run(scenario())


# 5. property: samples stay within the top-k / top-p support -----------------------------------


def _in_support(logits: torch.Tensor, token: int, top_k: int, top_p: float) -> bool:
    probs = torch.softmax(logits, -1)
    if top_k > 0:
        kth = torch.sort(logits, descending=True).values[top_k - 1]
        if logits[token] < kth:
            return False
        probs = torch.where(logits >= kth, probs, torch.zeros_like(probs))
        probs = probs / probs.sum()
    mass_before = probs[probs > probs[token]].sum().item()
    return mass_before < top_p + 1e-5


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    n=st.integers(1, 10),
    offset=st.integers(0, 40),
    top_k=st.sampled_from([-1, 1, 2, 3, 5, 10]),
    top_p=st.floats(0.05, 1.0),
    temperature=st.floats(0.3, 1.5),
)
def test_samples_in_support(engine, ref_model, n, offset, top_k, top_p, temperature):
    p = prompt(n, offset)
    sp = {
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "max_tokens": 4,
        "ignore_eos": True,
    }
    res = run(engine.generate(p, sp))
    logits = ref_logits(ref_model, p + res.token_ids)[len(p) - 1 : -1] / temperature
    for row, tok in zip(logits, res.token_ids):
        assert _in_support(row, tok, top_k, top_p)


@settings(max_examples=30, deadline=None)
@given(
    logits=st.lists(st.floats(-5, 5), min_size=2, max_size=12),
    top_k=st.integers(1, 12),
    top_p=st.floats(0.01, 1.0),
)
def test_apply_top_k_top_p_property(logits, top_k, top_p):
    x = torch.tensor([logits])
    out = apply_top_k_top_p(x, torch.tensor([top_k]), torch.tensor([top_p]))[0]
    kept = torch.isfinite(out)
    assert kept.any()
    assert torch.equal(out[kept], x[0][kept])
    for tok in range(len(logits)):
        if kept[tok]:
            assert _in_support(x[0], tok, min(top_k, len(logits)), top_p)
