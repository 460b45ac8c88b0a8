"""The small tiny world: build, caching, file formats, verl's RLHFDataset, reproducibility, CLI."""

import json
import os
import subprocess
import sys

import pytest

from verl_frontier.tinyworld.builder import WORLD_VERSION, build

SMALL_BUILD_CPU_LIMIT = 120.0  # CPU seconds = 60 s on the 2 free cores the targets assume


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """The small world, built once per session into the session's basetemp (shared across files)."""
    out = tmp_path_factory.getbasetemp() / "tinyworld-small-seed0"
    m = build(out=out, size="small", seed=0, quiet=True)
    return out, m


@pytest.mark.slow
def test_small_world_builds_fast_and_is_complete(small_world):
    out, m = small_world
    assert m["size"] == "small" and m["seed"] == 0 and m["versions"]["world_version"] == WORLD_VERSION
    t = m["figures"]["timings"]
    # wall time on a machine shared with other jobs is noisy; CPU time is what the budget is about
    assert t["cpu_seconds"] < SMALL_BUILD_CPU_LIMIT, t
    for rel in (
        "tokenizer/tokenizer.json",
        "teacher/config.json",
        "teacher/model.safetensors",
        "student/config.json",
        "student/tokenizer.json",
        "data/train.parquet",
        "data/test.parquet",
        "data/train_verbose.parquet",
        "data/test_verbose.parquet",
        "manifest.json",
    ):
        assert (out / rel).is_file(), rel
    assert set(m["files"]) >= {"data/train.parquet", "tokenizer/tokenizer.json", "teacher/model.safetensors"}
    from verl_frontier.tinyworld.builder import SIZES

    small = SIZES["small"]
    assert m["task"]["verbose_frac_batches"] == {
        "teacher": small.teacher_train.verbose_frac,
        "student": small.student_train.verbose_frac,
    }
    for role in ("teacher", "student"):
        f = m["figures"][role]
        assert f["train_spec"]["verbose_frac"] == m["task"]["verbose_frac_batches"][role]  # what it trained with
        assert 0.0 <= f["greedy_acc"] <= 1.0 and f["params"] > 0


def test_cached_build_is_reused(small_world):
    out, m = small_world
    again = build(out=out, size="small", seed=0, quiet=True)
    assert again["built_at_unix"] == m["built_at_unix"]


def test_models_load_with_auto_classes(small_world):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, m = small_world
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    for role in ("teacher", "student"):
        model = AutoModelForCausalLM.from_pretrained(out / role)
        assert type(model).__name__ == "Qwen2ForCausalLM"
        assert model.config.vocab_size == len(tok)  # verl pitfall
        assert model.get_input_embeddings().weight.shape[0] == len(tok)
        t2 = AutoTokenizer.from_pretrained(out / role)
        assert len(t2) == len(tok) and t2.chat_template == tok.chat_template
        ids = tok.apply_chat_template(
            [{"role": "user", "content": "Compute 1+2. Be concise."}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )
        x = torch.tensor([ids["input_ids"]])
        gen = model.generate(x, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
        assert gen.shape[1] <= x.shape[1] + 4
    ts, s = m["figures"]["teacher"]["params"], m["figures"]["student"]["params"]
    assert s < ts


def test_parquet_format(small_world):
    import pandas as pd

    out, _ = small_world
    for name in ("train", "test", "train_verbose", "test_verbose"):
        df = pd.read_parquet(out / "data" / f"{name}.parquet")
        assert {"data_source", "prompt", "ability", "reward_model", "extra_info"} <= set(df.columns)
        row = df.iloc[0]
        assert list(row["prompt"])[0]["role"] == "user"
        assert row["reward_model"]["style"] == "rule" and int(row["reward_model"]["ground_truth"]) >= 0
        assert row["extra_info"]["split"] == name.split("_")[0]
        assert row["extra_info"]["style"] == ("verbose" if name.endswith("verbose") else "concise")
        assert {"index", "num_operands", "digits", "difficulty"} <= set(row["extra_info"])
    train = set(pd.read_parquet(out / "data/train.parquet")["extra_info"].map(lambda e: e["expression"]))
    test = set(pd.read_parquet(out / "data/test.parquet")["extra_info"].map(lambda e: e["expression"]))
    assert not (train & test)


def test_reference_answers_score_one(small_world):
    import pandas as pd

    from verl_frontier.tinyworld.reward import compute_score

    out, _ = small_world
    df = pd.read_parquet(out / "data/test_verbose.parquet")
    for _, r in df.iterrows():
        assert (
            compute_score(
                r["data_source"], r["extra_info"]["reference"] + "<|endoftext|>", r["reward_model"]["ground_truth"]
            )["score"]
            == 1.0
        )


def test_parquet_passes_verl_rlhf_dataset(small_world, tmp_path):
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    out, _ = small_world
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    cfg = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "max_prompt_length": 64,
            "filter_overlong_prompts": True,
            "truncation": "error",
            "cache_dir": str(tmp_path / "cache"),
            "return_raw_chat": True,
        }
    )
    for name in ("train", "test_verbose"):
        ds = RLHFDataset(data_files=[str(out / "data" / f"{name}.parquet")], tokenizer=tok, config=cfg)
        assert len(ds) > 0
        for i in range(3):
            item = ds[i]
            assert item["raw_prompt"][0]["role"] == "user"
            assert item["index"] == i or isinstance(item["index"], int)
            ids = tok.apply_chat_template(
                item["raw_prompt"], add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
            assert tok.unk_token_id not in ids and len(ids) <= 64


@pytest.mark.slow
def test_same_seed_same_files(small_world, tmp_path):
    out, m = small_world
    m2 = build(out=tmp_path / "again", size="small", seed=0, quiet=True)
    data_tok = {k: v for k, v in m["files"].items() if k.startswith(("data/", "tokenizer/"))}
    assert data_tok and all(m2["files"][k] == v for k, v in data_tok.items())
    # plain torch on CPU with a fixed seed and thread count: the weights are bit-identical here too
    for k in ("teacher/model.safetensors", "student/model.safetensors"):
        assert m2["files"][k] == m["files"][k], k
    other = build(out=tmp_path / "seed1", size="small", seed=1, quiet=True)
    assert other["files"]["data/train.parquet"] != m["files"]["data/train.parquet"]
    assert other["files"]["tokenizer/tokenizer.json"] == m["files"]["tokenizer/tokenizer.json"]


@pytest.mark.slow
def test_parallel_training_gives_the_same_models(small_world, tmp_path):
    """The full world trains teacher and student in two spawned processes; same weights as in-process."""
    out, m = small_world
    m2 = build(out=tmp_path / "par", size="small", seed=0, quiet=True, parallel=True)
    for k in ("teacher/model.safetensors", "student/model.safetensors", "data/test.parquet"):
        assert m2["files"][k] == m["files"][k], k


def test_world_dir_default_and_env(monkeypatch, tmp_path):
    from verl_frontier.tinyworld.paths import world_dir

    monkeypatch.delenv("FRONTIER_WORLD_DIR", raising=False)
    d = world_dir("small", 3)
    assert d.name == "small-seed3" and d.parent.name == ".world"
    monkeypatch.setenv("FRONTIER_WORLD_DIR", str(tmp_path / "w"))
    assert world_dir() == tmp_path / "w"


def test_cli_info_and_module_entry(small_world):
    from typer.testing import CliRunner

    from verl_frontier.tinyworld.cli import world_app

    out, _ = small_world
    r = CliRunner().invoke(world_app, ["info", str(out)])
    assert r.exit_code == 0, r.output
    assert "teacher" in r.output and "greedy_acc" in r.output
    for cmd in (["--help"], ["build", "--help"], ["info", "--help"]):
        h = CliRunner().invoke(world_app, cmd)
        assert h.exit_code == 0, h.output
    r = CliRunner().invoke(world_app, ["build", "--out", str(out), "--size", "small", "--quiet"])
    assert r.exit_code == 0, r.output  # cached: returns at once
    env = dict(os.environ, FRONTIER_WORLD_DIR=str(out))
    p = subprocess.run(
        [sys.executable, "-m", "verl_frontier.tinyworld", "info", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["size"] == "small"


def test_heldout_set_is_fresh_test_side_and_loads_in_verl(small_world, tmp_path):
    import pyarrow.parquet as pq
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from typer.testing import CliRunner
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from verl_frontier.tinyworld import tasks
    from verl_frontier.tinyworld.cli import world_app
    from verl_frontier.tinyworld.heldout import ensure_heldout, heldout_problems
    from verl_frontier.tinyworld.reward import compute_score

    out, _ = small_world
    r = CliRunner().invoke(world_app, ["heldout", str(out), "--rows-per-cell", "40"])
    assert r.exit_code == 0, r.output
    path = out / "heldout" / "test.parquet"
    rows = pq.read_table(path).to_pylist()
    expressions = {
        split: {row["extra_info"]["expression"] for row in pq.read_table(out / f"data/{split}.parquet").to_pylist()}
        for split in ("train", "test")
    }
    held = [row["extra_info"]["expression"] for row in rows]
    assert len(held) == len(set(held)), "held-out expressions repeat"
    assert not set(held) & expressions["train"] and not set(held) & expressions["test"]
    assert all(tasks.is_test_problem(e) for e in held)
    by_k = {k: sum(row["extra_info"]["num_operands"] == k for row in rows) for k in (2, 3)}
    assert by_k[3] == 40 and 0 <= by_k[2] <= 40  # k = 2 has few unused test-side expressions
    for row in rows:
        assert row["prompt"][0]["content"].endswith(tasks.CONCISE_INSTRUCTION)
        reference = row["extra_info"]["reference"] + "<|endoftext|>"
        assert compute_score(row["data_source"], reference, row["reward_model"]["ground_truth"])["score"] == 1.0
    # deterministic from the seed, and cached
    again = heldout_problems([(2, 1), (3, 1)], 40, 0, expressions["test"])
    assert [p.expression for p in again] == held
    stamp = path.stat().st_mtime_ns
    assert ensure_heldout(out, 40) == path and path.stat().st_mtime_ns == stamp
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    cfg = {"prompt_key": "prompt", "max_prompt_length": 64, "filter_overlong_prompts": True, "truncation": "error"}
    cfg = OmegaConf.create({**cfg, "cache_dir": str(tmp_path / "cache"), "return_raw_chat": True})
    assert len(RLHFDataset(data_files=[str(path)], tokenizer=tok, config=cfg)) == len(rows)
    with pytest.raises(ValueError, match="rows_per_cell must be >= 1, got 0"):
        ensure_heldout(out, 0)
    with pytest.raises(FileNotFoundError, match="no tiny world at"):
        ensure_heldout(tmp_path / "nowhere")


def test_role_seeds_and_specs():
    from verl_frontier.tinyworld.builder import SIZES, model_seed, role_specs

    # the seeds every built world's models were trained with (changing them changes every world's hashes)
    assert [model_seed(s, r) for s in (0, 3) for r in ("teacher", "student")] == [1, 2, 3001, 3002]
    cfg = SIZES["full"]
    assert role_specs(cfg, "teacher") == (cfg.teacher, cfg.teacher_train)
    assert role_specs(cfg, "student") == (cfg.student, cfg.student_train)
    with pytest.raises(ValueError, match="'critic'"):
        role_specs(cfg, "critic")
