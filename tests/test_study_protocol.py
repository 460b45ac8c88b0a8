"""The study protocol: budgets, seeds, statistics (against enumeration and textbook values), results.json, its
table and PNG; and the clamp of the top-k forward KL at 0 (verl's and Paced's)."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_frontier import studies
from verl_frontier.evaluation.paired import mcnemar_exact, sign_flip_exact
from verl_frontier.studies import stats
from verl_frontier.studies.budget import Budget, BudgetMismatch, StudyError, check_spent, schedule

# ---------------------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------------------


def _pairs(b: int, c: int, both: int = 0, neither: int = 0):
    before = [1] * b + [0] * c + [1] * both + [0] * neither
    after = [0] * b + [1] * c + [1] * both + [0] * neither
    return before, after


def test_mcnemar_textbook_value_and_pooled_single_seed():
    before, after = _pairs(10, 2, both=30, neither=5)
    # P[X <= 2], X ~ Bin(12, 1/2) = (1 + 12 + 66) / 4096; two-sided: twice that
    assert mcnemar_exact(before, after)["p_value"] == pytest.approx(2 * 79 / 4096)
    assert round(2 * 79 / 4096, 4) == 0.0386
    pooled = stats.pooled_mcnemar_exact([(before, after)])
    assert (pooled["only_baseline"], pooled["only_arm"], pooled["n"]) == (10, 2, 47)
    assert pooled["p_value"] == pytest.approx(0.0385742, abs=1e-7)


def test_pooled_sums_discordant_pairs_over_seeds():
    # seeds with (b, c) = (4, 1), (3, 0), (3, 1): B = 10, C = 2 -> the same p as one seed with 10 / 2
    seeds = [_pairs(4, 1, both=3), _pairs(3, 0, neither=2), _pairs(3, 1)]
    pooled = stats.pooled_mcnemar_exact(seeds)
    assert (pooled["only_baseline"], pooled["only_arm"], pooled["seeds"]) == (10, 2, 3)
    assert pooled["p_value"] == pytest.approx(2 * 79 / 4096)
    # per seed: 2 P[X <= 1 | 5] = 12/32, 2 P[X <= 0 | 3] = 2/8, 2 P[X <= 1 | 4] = 10/16
    assert [r["p_value"] for r in pooled["per_seed"]] == [12 / 32, 2 / 8, 10 / 16]
    with pytest.raises(ValueError):
        stats.pooled_mcnemar_exact([])


def _brute_force_pooled_p(seeds) -> float:
    """Every sign pattern of the (seed, problem) differences, equally likely under H0: P(|S| >= |S_obs|)."""
    diffs = [a - b for before, after in seeds for b, a in zip(before, after)]
    nonzero = [d for d in diffs if d]
    observed = abs(sum(diffs))
    hits = sum(
        abs(sum(s * abs(d) for s, d in zip(signs, nonzero))) >= observed
        for signs in itertools.product((1, -1), repeat=len(nonzero))
    )
    return hits / 2 ** len(nonzero)


score_lists = st.integers(1, 5).flatmap(
    lambda n: st.lists(
        st.tuples(
            st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n),
            st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n),
        ),  # fmt: skip
        min_size=1,
        max_size=3,
    )
)


@settings(max_examples=150, deadline=None)
@given(score_lists)
def test_pooled_matches_enumeration_and_its_properties(seeds):
    got = stats.pooled_mcnemar_exact(seeds)["p_value"]
    assert got == pytest.approx(_brute_force_pooled_p(seeds), abs=1e-12)
    assert 0.0 <= got <= 1.0
    swapped = [(after, before) for before, after in seeds]
    assert stats.pooled_mcnemar_exact(swapped)["p_value"] == pytest.approx(got)
    assert stats.pooled_mcnemar_exact([(b, b) for b, _ in seeds])["p_value"] == 1.0
    concatenated = sign_flip_exact([x for b, _ in seeds for x in b], [x for _, a in seeds for x in a])
    assert concatenated["p_value"] == pytest.approx(got)


@pytest.mark.parametrize(
    ("df", "quantile"),
    [(1, 12.7062047), (2, 4.30265273), (3, 3.18244631), (4, 2.77644511), (9, 2.26215716), (30, 2.04227246)],
)
def test_student_t_quantiles_textbook(df, quantile):
    assert stats.student_t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-6)
    assert stats.student_t_quantile(0.025, df) == pytest.approx(-quantile, abs=1e-6)
    assert stats.student_t_cdf(0.0, df) == 0.5


def test_student_t_cdf_closed_forms():
    for t in (-3.0, -0.5, 0.7, 2.5):
        assert stats.student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi)  # Cauchy
        assert stats.student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)))
    with pytest.raises(ValueError):
        stats.student_t_cdf(1.0, 0)


def test_t_interval_hand_computed():
    got = stats.t_interval([1, 2, 3, 4, 5])  # mean 3, s = sqrt(2.5), se = sqrt(0.5), t_{.975,4} = 2.776445
    assert (got["mean"], got["n"]) == (3.0, 5)
    assert got["low"] == pytest.approx(3 - 2.776445 * math.sqrt(0.5), abs=1e-6)
    assert got["high"] == pytest.approx(1.036757 + 2 * 1.963243, abs=1e-5)
    three = stats.t_interval([0.40, 0.45, 0.50])  # s = 0.05, se = 0.028868, t_{.975,2} = 4.302653
    assert (three["low"], three["high"]) == (pytest.approx(0.325793, abs=1e-6), pytest.approx(0.574207, abs=1e-6))
    with pytest.raises(ValueError, match="at least 2"):
        stats.t_interval([0.5])


def test_bootstrap_over_problems_is_reproducible_and_sane():
    scores = [[1, 0, 1, 1, 0, 1, 0, 1] * 5, [1, 1, 1, 0, 0, 1, 0, 1] * 5, [0, 0, 1, 1, 0, 1, 0, 1] * 5]
    a, b = stats.bootstrap_interval(scores), stats.bootstrap_interval(scores)
    assert a == b and a["low"] < a["mean"] < a["high"]
    assert a["mean"] == pytest.approx(sum(map(sum, scores)) / 120)
    constant = stats.bootstrap_interval([[1, 1, 1], [1, 1, 1]])
    assert constant["low"] == constant["high"] == 1.0


# ---------------------------------------------------------------------------------------------------------
# declaration and budget
# ---------------------------------------------------------------------------------------------------------

CONFIGS = {
    "kd": {"data": {"train_batch_size": 64}, "actor_rollout_ref": {"actor": {"ppo_mini_batch_size": 16}}},
    "opd": {"data": {"train_batch_size": 16}, "actor_rollout_ref": {"rollout": {"n": 4}}},
}


def _arms():
    return [studies.Arm("kd", "kd_uniform", "kd_uniform_tiny"),
            studies.Arm("opd", "opd_uniform", "opd_uniform_tiny", ["data.val_batch_size=512"])]  # fmt: skip


def _study(unit="prompts", amount=9600, seeds=(0, 1, 2), **kwargs):
    return studies.Study("demo", _arms(), baseline="kd", budget=Budget(unit, amount, **kwargs), seeds=seeds)


def test_claim_needs_three_seeds_and_a_baseline_arm():
    with pytest.raises(StudyError, match=r"bears a claim and needs at least 3 seeds, got 2 \(\[0, 1\]\)"):
        _study(seeds=(0, 1))
    exploratory = studies.Study("x", _arms(), baseline="kd", budget=Budget("prompts", 64), seeds=(0,), claim=False)
    assert exploratory.seeds == (0,)
    with pytest.raises(StudyError, match="baseline 'grpo' is not one of its arms"):
        studies.Study("x", _arms(), baseline="grpo", budget=Budget("prompts", 64), seeds=(0, 1, 2))
    with pytest.raises(StudyError, match="seed 1 given twice"):
        _study(seeds=(0, 1, 1))
    with pytest.raises(StudyError, match="not one of"):
        Budget("tokens", 10)
    with pytest.raises(StudyError, match="tolerance"):
        Budget("prompts", 10, tolerance=0.1)
    assert studies.Study("legacy", _arms()).budget is None  # the exploratory studies of the recipes still work


def test_prompt_budget_from_the_real_recipe_configs():
    plans = schedule(_study())  # kd_uniform_tiny: 64 prompts per step, opd_uniform_tiny: 16
    assert {name: plan.steps for name, plan in plans.items()} == {"kd": 150, "opd": 600}
    assert plans["opd"].overrides == ["trainer.total_training_steps=600"]
    assert studies.budget_overrides(_study()) == {"kd": ["trainer.total_training_steps=150"],
                                                  "opd": ["trainer.total_training_steps=600"]}  # fmt: skip
    assert plans["opd"].settings["rollout_n"] == 4
    # a study-wide override wins over the recipe, as in verl
    assert schedule(_study(amount=640), extra=["data.train_batch_size=32"])["kd"].steps == 20


def test_budgets_that_do_not_divide_or_exceed_the_data_are_refused():
    with pytest.raises(StudyError, match=r"arm 'kd' \(64 distinct prompts seen per step\).*multiple of 64"):
        schedule(_study(amount=9608))
    with pytest.raises(StudyError, match="exceeds the 6,000 training prompts"):
        schedule(_study(amount=9600), train_size=6000)
    arms = [studies.Arm("a", "r", "c", ["trainer.total_training_steps=5"]), studies.Arm("b", "r", "c")]
    study = studies.Study("s", arms, baseline="a", budget=Budget("prompts", 64), seeds=(0, 1, 2))
    with pytest.raises(StudyError, match="sets trainer.total_training_steps itself"):
        schedule(study, configs={"a": CONFIGS["kd"], "b": CONFIGS["kd"]})


def test_optimizer_step_and_token_budgets():
    opd = {**CONFIGS["opd"], "actor_rollout_ref": {"actor": {"ppo_mini_batch_size": 16}}}
    plans = schedule(_study("optimizer_steps", 80), configs={"kd": CONFIGS["kd"], "opd": opd})
    assert (plans["kd"].per_step, plans["kd"].steps, plans["opd"].steps) == (4, 20, 80)
    with pytest.raises(StudyError, match="needs actor_rollout_ref.actor.ppo_mini_batch_size"):
        schedule(_study("optimizer_steps", 80), configs=CONFIGS)
    with pytest.raises(StudyError, match="expected tokens per response"):
        schedule(_study("response_tokens", 100_000, tolerance=0.1), configs=CONFIGS)
    tokens = schedule(_study("response_tokens", 96_000, tolerance=0.1), configs=CONFIGS,
                      tokens_per_response={"kd": 30.0, "opd": 25.0})  # fmt: skip
    assert (tokens["kd"].steps, tokens["opd"].steps) == (50, 60)  # 96000 / (64 x 30), 96000 / (16 x 4 x 25)


def _logged(steps: int, response_length: float = 25.0) -> dict:
    log = {0: {"val-core/x/acc/mean@1": 0.1}}
    for s in range(1, steps + 1):
        log[s] = {"training/global_step": s, "response_length/mean": response_length, "timing_s/step": 2.0}
    return log


def test_check_spent_reads_the_logged_steps():
    study = _study()
    plans = schedule(study, configs=CONFIGS)
    assert check_spent(study.budget, plans["kd"], _logged(150), seed=0) == {
        "unit": "prompts", "amount": 9600, "spent": 9600, "steps": 150}  # fmt: skip
    with pytest.raises(BudgetMismatch, match=r"arm 'opd' seed 2 logged 599 training steps \(last 599\)"):
        check_spent(study.budget, plans["opd"], _logged(599), seed=2)
    tokens = _study("response_tokens", 96_000, tolerance=0.1)
    plan = schedule(tokens, configs=CONFIGS, tokens_per_response={"kd": 30.0, "opd": 25.0})["opd"]
    assert check_spent(tokens.budget, plan, _logged(60, 26.0))["spent"] == pytest.approx(60 * 64 * 26.0)
    with pytest.raises(BudgetMismatch, match="tolerance 10%"):
        check_spent(tokens.budget, plan, _logged(60, 35.0))


# ---------------------------------------------------------------------------------------------------------
# run_study -> results.json -> table and PNG
# ---------------------------------------------------------------------------------------------------------

N_PROBLEMS = 40


def _scores(arm: str, seed: int) -> list[int]:
    rate = 0.3 if arm == "kd" else 0.6
    return [int(((i * 7 + seed * 3) % 10) < rate * 10) for i in range(N_PROBLEMS)]


def _fake_protocol_run(tmp_path, monkeypatch, short_seed=None):
    calls = []

    def fake_run_arm(arm, seed, out, steps, test_freq, world=None, extra=(), save_final=False):
        calls.append((arm.name, seed, steps))
        logged = _logged(steps - (seed == short_seed))
        val = {0: 0.1, steps // 2: 0.2 + 0.01 * seed, steps: 0.3 + (arm.name == "opd") * 0.1 + 0.01 * seed}
        return {"val_acc": val, "wall_s": 10.0 + seed, "steps": steps, "metrics": logged}

    monkeypatch.setattr(studies, "run_arm", fake_run_arm)
    study = _study()

    def after_run(arm, seed, run_dir, run):
        run["final_scores"] = _scores(arm.name, seed)

    results = studies.run_study(study, None, tmp_path, steps=None, after_run=after_run,
                                plans=schedule(study, configs=CONFIGS))  # fmt: skip
    return study, results, calls


def test_protocol_run_study_writes_a_valid_results_json(tmp_path, monkeypatch):
    study, results, calls = _fake_protocol_run(tmp_path, monkeypatch)
    assert calls[:2] == [("kd", 0, 150), ("opd", 0, 600)]
    run = results["runs"]["opd/seed1"]
    assert run["budget"]["spent"] == 9600
    assert run["curve"][-1] == {"step": 600, "prompts": 9600, "wall_s": 1200.0, "accuracy": pytest.approx(0.41)}
    assert set(run["kept_metrics"]["5"]) == {"training/global_step", "response_length/mean", "timing_s/step"}

    initial = [int(i % 5 == 0) for i in range(N_PROBLEMS)]
    payload = studies.study_results(study, results, initial, selection_n=415)
    path = tmp_path / "recipe" / "results.json"
    studies.write_results(path, payload)
    loaded = studies.load_results(path)
    assert loaded == json.loads(json.dumps(payload))
    opd = loaded["arms"]["opd"]
    assert opd["seeds"] == [0, 1, 2] and opd["budget_spent"] == [9600, 9600, 9600]
    assert loaded["arms"]["kd"]["vs_baseline"] is None
    per_seed = [mcnemar_exact(_scores("kd", s), _scores("opd", s))["p_value"] for s in range(3)]
    assert [opd["vs_baseline"]["mcnemar"][str(s)]["p_value"] for s in range(3)] == per_seed
    pooled = stats.pooled_mcnemar_exact([(_scores("kd", s), _scores("opd", s)) for s in range(3)])
    assert opd["vs_baseline"]["pooled"]["p_value"] == pooled["p_value"]
    finals = [sum(_scores("opd", s)) / N_PROBLEMS for s in range(3)]
    assert opd["final_accuracy"] == stats.t_interval(finals)
    assert (loaded["final_set"], loaded["initial_accuracy"]) == ({"path": "heldout/test.parquet", "n_problems": 40},
                                                                 0.2)  # fmt: skip

    table = studies.results_table(loaded).splitlines()
    assert table[0].startswith("Final set `heldout/test.parquet` (40 problems, greedy); every arm: 9,600 distinct")
    ci = opd["final_accuracy"]
    assert f"| opd | 3 | 9,600 | 0.2 min | 0.200 | {ci['mean']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] |" in table[-1]
    assert table[-2].startswith("| kd | 3 | 9,600 |") and "(baseline)" in table[-2]

    png = studies.plot_study(loaded, tmp_path / "study.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".png") == ["study.png"]


def test_loader_refuses_tampered_or_incomplete_results(tmp_path, monkeypatch):
    study, results, _ = _fake_protocol_run(tmp_path, monkeypatch)
    payload = json.loads(json.dumps(studies.study_results(study, results, [0] * N_PROBLEMS)))
    cases = {
        "p_value": lambda p: p["arms"]["opd"]["vs_baseline"]["pooled"].update(p_value=0.5),
        "final_accuracy does not match": lambda p: p["arms"]["opd"]["runs"]["0"].update(final_accuracy=0.9),
        "needs at least 3 seeds": lambda p: [
            p["arms"]["opd"][k].pop("2") if k == "runs" else p["arms"]["opd"][k].pop() for k in ("runs", "seeds")
        ],  # fmt: skip
        "spent 9000": lambda p: p["arms"]["kd"]["runs"]["1"].update(budget_spent=9000.0),
        "baseline 'x'": lambda p: p.update(baseline="x"),
        "0/1 characters": lambda p: p.update(initial_scores="2" * N_PROBLEMS),
    }
    for message, tamper in cases.items():
        broken = json.loads(json.dumps(payload))
        tamper(broken)
        (tmp_path / "r.json").write_text(json.dumps(broken))
        with pytest.raises(studies.ResultsError, match="statistics" if message == "p_value" else message):
            studies.load_results(tmp_path / "r.json")


def test_a_run_that_spent_another_budget_is_refused_and_not_recorded(tmp_path, monkeypatch):
    with pytest.raises(BudgetMismatch, match="arm 'kd' seed 1 logged 149 training steps"):
        _fake_protocol_run(tmp_path, monkeypatch, short_seed=1)
    recorded = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert sorted(recorded) == ["kd/seed0", "opd/seed0"]


# ---------------------------------------------------------------------------------------------------------
# top-k forward KL clamped at 0: verl's forward_kl_topk and paced_forward_kl_topk lose the gradient
# ---------------------------------------------------------------------------------------------------------


def _negative_partial_kl_batch():
    """One sample (prompt 1, response 2 tokens), vocabulary 6, teacher top-2 holding half of its mass, student
    holding 95 % on those two tokens: the partial forward KL sum_k p (log p - log q) is negative everywhere."""
    import torch
    from verl.utils import tensordict_utils as tu

    teacher = torch.tensor([0.30, 0.20, 0.125, 0.125, 0.125, 0.125]).log()
    student = torch.tensor([0.60, 0.35, 0.0125, 0.0125, 0.0125, 0.0125]).log()
    lengths = {"prompt": 1, "response": 2}
    total = 3
    top = teacher.topk(2)

    def nested(values, n):
        return torch.nested.as_nested_tensor([values[:n]], layout=torch.jagged)

    data = tu.get_tensordict(
        {
            "prompts": nested(torch.zeros(1, dtype=torch.long), 1),
            "responses": nested(torch.zeros(2, dtype=torch.long), 2),
            "input_ids": nested(torch.zeros(total, dtype=torch.long), total),
            "response_mask": nested(torch.ones(2, dtype=torch.long), 2),
            "teacher_logprobs": nested(top.values.expand(total, 2).contiguous(), total),
            "teacher_ids": nested(top.indices.expand(total, 2).contiguous(), total),
            "advantages": nested(torch.ones(2), 2),  # Paced weight 1
            "returns": nested(torch.zeros(2), 2),
        },
        non_tensor_dict={"dp_size": 1, "batch_num_tokens": lengths["response"], "global_batch_size": 1},
    )
    logits = student.expand(total, 6).clone().requires_grad_(True)
    return data, logits, top


def _loss_grad(loss_mode, data, logits):
    import torch
    from verl_distillation import verl_distillation_loss

    loss, _ = verl_distillation_loss(
        loss_mode, data, logits, topk=2, micro_batch=1, loss_agg_mode="seq-mean-token-mean"
    )
    return loss, torch.autograd.grad(loss, logits, allow_unused=True)[0]


def test_topk_forward_kl_clamp_zeroes_the_gradient_in_verl_and_paced():
    torch = pytest.importorskip("torch")
    pytest.importorskip("verl")
    from verl_frontier.kd.topk import topk_divergences
    from verl_frontier.paced import verl_plugin  # noqa: F401  (registers the paced_* losses)

    data, logits, top = _negative_partial_kl_batch()
    raw = topk_divergences(logits, top.values.expand(3, 2), top.indices.expand(3, 2))["forward_kl"]
    expected = 0.3 * math.log(0.3 / 0.6) + 0.2 * math.log(0.2 / 0.35)
    torch.testing.assert_close(raw, torch.full((3,), expected), rtol=1e-5, atol=1e-6)
    assert expected < 0
    unclamped_grad = torch.autograd.grad(raw.sum(), logits)[0]
    # d/dz_j of -sum_{k in S} p_k log q_k = q_j P_T(S) - p_j [j in S]: a nonzero pull toward the teacher
    analytic = torch.tensor([0.6 * 0.5 - 0.3, 0.35 * 0.5 - 0.2, *[0.0125 * 0.5] * 4]).expand(3, 6)
    torch.testing.assert_close(unclamped_grad, analytic, rtol=1e-4, atol=1e-6)

    for mode in ("forward_kl_topk", "paced_forward_kl_topk", "paced_topk"):  # paced_topk: code 0 = forward KL
        loss, grad = _loss_grad(mode, data, logits)
        assert float(loss.detach()) == 0.0, mode
        assert grad is None or float(grad.abs().max()) == 0.0, mode
    for mode in ("paced_reverse_kl_topk", "paced_jsd_topk"):  # renormalised on the top-k: no clamp needed
        loss, grad = _loss_grad(mode, data, logits)
        assert float(loss.detach()) > 0.0, mode
        assert float(grad.abs().max()) > 1e-3, mode
