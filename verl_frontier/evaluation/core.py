"""Evaluate a checkpoint on a verl-format parquet: greedy accuracy, pass@k, mean@k, lengths."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from verl_frontier.arguments import atomic_dir, savefig_atomic

from .checkpoint import locate_checkpoint, resolve_checkpoint
from .passk import counts_from_scores, mean_at_k_curve, pass_at_k_curve

DEFAULT_REWARD = "verl_frontier.tinyworld.reward:compute_score"


def load_reward_fn(spec: str | Callable | None) -> Callable:
    """``module:function`` or ``path/to/file.py:function`` (default: the tiny world's reward); raises
    ValueError (one line) when it cannot be loaded or is not callable."""
    if callable(spec):
        return spec
    spec = spec or DEFAULT_REWARD
    mod_name, _, fn_name = spec.partition(":")
    fn_name = fn_name or "compute_score"
    try:
        if mod_name.endswith(".py"):
            if not Path(mod_name).is_file():
                raise FileNotFoundError(f"no such file {mod_name}")
            s = importlib.util.spec_from_file_location(Path(mod_name).stem, mod_name)
            mod = importlib.util.module_from_spec(s)
            s.loader.exec_module(mod)  # type: ignore[union-attr]
        else:
            mod = importlib.import_module(mod_name.removeprefix("pkg://"))
    except (ImportError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot load {spec!r}: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ValueError(f"cannot load {spec!r}: {mod_name} has no function {fn_name!r}")
    return fn


def _score(reward_fn, row, text) -> float:
    gt = row["reward_model"]["ground_truth"] if isinstance(row.get("reward_model"), dict) else None
    try:
        r = reward_fn(
            data_source=row.get("data_source"), solution_str=text, ground_truth=gt, extra_info=row.get("extra_info")
        )
    except Exception:
        return 0.0
    if isinstance(r, dict):
        r = r.get("score", 0.0)
    try:
        return float(r)
    except Exception:
        return 0.0


def _to_py(x):
    if isinstance(x, dict):
        return {k: _to_py(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_py(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_to_py(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        return x.item()
    return x


def load_rows(data_parquet: str | Path, limit: int | None = None) -> list[dict]:
    import pandas as pd

    df = pd.read_parquet(data_parquet)
    if limit is not None:
        df = df.iloc[:limit]
    return [_to_py(r) for r in df.to_dict(orient="records")]


#: Columns an evaluation parquet needs: ``prompt`` and either answers (``reward_model``) or ORBIT trials.
DATA_COLUMNS = ("prompt",)
DATA_ALTERNATIVES = (("reward_model",), ("agent_name", "extra_info"))


def check_rows(rows: list[dict], name: str = "data") -> None:
    """Every row has a chat prompt (a non-empty list of {role, content}); answer rows have a ground truth."""
    from verl_frontier.arguments import InputError
    from verl_frontier.orbit.evaluate import is_orbit_rows

    orbit = is_orbit_rows(rows)
    for index, row in enumerate(rows):
        prompt = row.get("prompt")
        if not (isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "content" in m for m in prompt)):
            raise InputError(name, f"row {index}: prompt must be a non-empty list of chat messages, got {prompt!r:.80}")
        if orbit:
            if not isinstance(row.get("extra_info"), dict):
                raise InputError(name, f"row {index}: ORBIT row without an extra_info dict")
        elif not (isinstance(row.get("reward_model"), dict) and "ground_truth" in row["reward_model"]):
            raise InputError(name, f"row {index}: reward_model.ground_truth missing")


def check_arguments(
    n: int, temperature: float, max_new_tokens: int, greedy: bool, k_max: int | None, limit: int | None,
    batch_size: int, threads: int | None = None,
) -> None:  # fmt: skip
    """The counts and ranges of ``evaluate``; raises ``InputError`` naming the argument."""
    from verl_frontier.arguments import NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, InputError

    checks = [
        ("n", n, NON_NEGATIVE_INT),
        ("temperature", temperature, POSITIVE_FLOAT),
        ("max_new_tokens", max_new_tokens, POSITIVE_INT),
        ("batch_size", batch_size, POSITIVE_INT),
        ("k_max", k_max, POSITIVE_INT),
        ("limit", limit, POSITIVE_INT),
        ("threads", threads, POSITIVE_INT),
    ]
    for name, value, kind in checks:
        if value is None and name in ("k_max", "limit", "threads"):
            continue
        try:
            kind.parse(value)
        except (ValueError, TypeError) as exc:
            raise InputError(name, str(exc)) from None
    if not isinstance(greedy, bool):
        raise InputError("greedy", f"must be true or false, got {greedy!r}")
    if n == 0 and not greedy:
        raise InputError("n", "0 samples and no greedy decoding: nothing to evaluate")
    if k_max is not None and k_max > max(n, 1):
        raise InputError("k_max", f"must be <= n ({n}), got {k_max}")


def _summary(rows, greedy_scores, sample_scores, greedy_lens, sample_lens, k_max) -> dict:
    out: dict = {"num_problems": len(rows)}
    if greedy_scores is not None:
        out["greedy_accuracy"] = float(np.mean(greedy_scores)) if greedy_scores else 0.0
        out["greedy_mean_response_tokens"] = float(np.mean(greedy_lens)) if greedy_lens else 0.0
    if sample_scores is not None:
        counts = counts_from_scores(sample_scores)
        out["pass_at_k"] = {str(k): v for k, v in pass_at_k_curve(counts, k_max).items()}
        out["mean_at_k"] = {str(k): v for k, v in mean_at_k_curve(counts, k_max).items()}
        rates = [c / n for n, c in counts]
        out["frac_pass_rate_0"] = float(np.mean([r == 0 for r in rates])) if rates else 0.0
        out["frac_pass_rate_mixed"] = float(np.mean([0 < r < 1 for r in rates])) if rates else 0.0
        out["frac_pass_rate_1"] = float(np.mean([r == 1 for r in rates])) if rates else 0.0
        flat = [x for ls in sample_lens for x in ls]
        out["sampled_mean_response_tokens"] = float(np.mean(flat)) if flat else 0.0
    return out


def evaluate(
    checkpoint: str | Path,
    data_parquet: str | Path,
    n: int = 8,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    greedy: bool = True,
    seed: int = 0,
    k_max: int | None = None,
    reward: str | Callable | None = None,
    out_dir: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    threads: int | None = None,
) -> dict:
    """Evaluate ``checkpoint`` (HF dir or verl FSDP checkpoint) on ``data_parquet``.

    Returns (and, with ``out_dir``, writes ``eval.json`` + ``pass_at_k.png``): greedy accuracy,
    pass@k / mean@k for k=1..k_max (default n) from ``n`` samples at ``temperature``, the fraction of
    problems with pass rate 0 / strictly between / 1, mean response lengths (tokens), and the same
    per ``data_source`` and per ``extra_info.difficulty`` (when present). ``n=0`` skips sampling.
    """
    from verl_frontier.arguments import InputError, check_parquet, output_dir

    # every input is checked before a model is loaded
    t0 = time.perf_counter()
    check_arguments(n, temperature, max_new_tokens, greedy, k_max, limit, batch_size, threads)
    try:
        locate_checkpoint(checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError("checkpoint", str(exc)) from None
    try:
        check_parquet(Path(data_parquet), DATA_COLUMNS, DATA_ALTERNATIVES)
    except ValueError as exc:
        raise InputError("data_parquet", str(exc)) from None
    if out_dir is not None:
        try:
            output_dir.parse(out_dir)
        except ValueError as exc:
            raise InputError("out_dir", str(exc)) from None
    rows = load_rows(data_parquet, limit)
    check_rows(rows, "data_parquet")
    from verl_frontier.orbit.evaluate import evaluate_orbit, is_orbit_rows

    orbit = is_orbit_rows(rows)
    if orbit and n == 0:
        raise InputError("n", "ORBIT rows are evaluated by sampled trials: n must be >= 1, got 0")
    reward_fn = None
    if not orbit:
        try:
            reward_fn = load_reward_fn(reward)
        except ValueError as exc:
            raise InputError("reward", str(exc)) from None

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .generate import generate

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        hf_dir = resolve_checkpoint(checkpoint)
        tokenizer = AutoTokenizer.from_pretrained(hf_dir)
        model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
        model.eval()
        if orbit:  # multi-episode trials: per-episode success instead of answer scoring
            from verl_frontier.orbit.evaluate import write_outputs as write_orbit

            result = evaluate_orbit(
                model, tokenizer, rows, n=n, temperature=temperature, seed=seed, k_max=k_max, batch_size=batch_size
            )
            result.update(checkpoint=str(checkpoint), hf_dir=str(hf_dir), data=str(data_parquet))
            if out_dir is not None:
                with atomic_dir(out_dir) as tmp:
                    write_orbit(result, tmp)
            return result
        prompts = [r["prompt"] for r in rows]

        greedy_scores = greedy_lens = None
        greedy_out = None
        if greedy:
            greedy_out = generate(
                model, tokenizer, prompts, greedy=True, max_new_tokens=max_new_tokens, batch_size=batch_size
            )
            greedy_scores = [_score(reward_fn, r, o[0]["text"]) for r, o in zip(rows, greedy_out)]
            greedy_lens = [o[0]["num_tokens"] for o in greedy_out]
        sample_scores = sample_lens = None
        if n and n > 0:
            samp = generate(
                model,
                tokenizer,
                prompts,
                n=n,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                seed=seed,
            )
            sample_scores = [[_score(reward_fn, r, o["text"]) for o in outs] for r, outs in zip(rows, samp)]
            sample_lens = [[o["num_tokens"] for o in outs] for outs in samp]
        k_max = min(k_max or n or 1, n) if n else None

        result = {
            "checkpoint": str(checkpoint),
            "hf_dir": str(hf_dir),
            "data": str(data_parquet),
            "n": n,
            "temperature": temperature,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
            **_summary(rows, greedy_scores, sample_scores, greedy_lens, sample_lens, k_max),
        }

        def breakdown(key_fn) -> dict:
            groups = defaultdict(list)
            for i, r in enumerate(rows):
                key = key_fn(r)
                if key is not None:
                    groups[str(key)].append(i)
            res = {}
            for key, idx in sorted(groups.items()):
                res[key] = _summary(
                    [rows[i] for i in idx],
                    None if greedy_scores is None else [greedy_scores[i] for i in idx],
                    None if sample_scores is None else [sample_scores[i] for i in idx],
                    None if greedy_lens is None else [greedy_lens[i] for i in idx],
                    None if sample_lens is None else [sample_lens[i] for i in idx],
                    k_max,
                )
            return res

        result["by_data_source"] = breakdown(lambda r: r.get("data_source"))
        diff = breakdown(lambda r: (r.get("extra_info") or {}).get("difficulty"))
        if diff:
            result["by_difficulty"] = diff
        if sample_scores is not None:  # per problem, in row order: paired comparisons (paired.sign_flip_exact)
            result["sample_correct"] = [c for _, c in counts_from_scores(sample_scores)]
        if greedy_out is not None:
            result["greedy_scores"] = greedy_scores  # per problem, in row order: paired comparisons (paired.py)
            result["examples"] = [
                {
                    "prompt": rows[i]["prompt"][-1]["content"],
                    "response": greedy_out[i][0]["text"],
                    "score": greedy_scores[i],
                }
                for i in range(min(5, len(rows)))
            ]
        result["seconds"] = round(time.perf_counter() - t0, 2)
        if out_dir is not None:
            write_outputs(result, out_dir)
        return result
    finally:
        torch.set_num_threads(old_threads)


def write_outputs(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """``eval.json`` (+ ``pass_at_k.png``) in ``out_dir``, written next to it first and moved in when complete."""
    out = Path(out_dir)
    names = {"json": "eval.json", **({"png": "pass_at_k.png"} if result.get("pass_at_k") else {})}
    with atomic_dir(out) as tmp:
        (tmp / names["json"]).write_text(json.dumps(result, indent=2))
        if "png" in names:
            plot_pass_at_k(result, tmp / names["png"])
    return {key: out / name for key, name in names.items()}


def plot_pass_at_k(result: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    ks = [int(k) for k in result["pass_at_k"]]
    ax.plot(ks, [result["pass_at_k"][str(k)] for k in ks], marker="o", label="all")
    groups = result.get("by_difficulty") or {}
    if 1 < len(groups) <= 8:
        for name, g in groups.items():
            if g.get("pass_at_k"):
                ax.plot(
                    ks, [g["pass_at_k"].get(str(k), math.nan) for k in ks], alpha=0.6, lw=1, label=f"difficulty {name}"
                )
    if "greedy_accuracy" in result:
        ax.axhline(result["greedy_accuracy"], color="gray", ls="--", lw=1, label="greedy")
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"n={result['n']}, T={result['temperature']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    savefig_atomic(fig, path)
    plt.close(fig)
