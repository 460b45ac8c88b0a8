"""Build the tiny world: tokenizer, data, SFT-trained teacher and student, figures, manifest.

Deterministic from the seed; cached (a world whose manifest has the same seed/size/version is reused).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from verl_frontier.arguments import building_dir

from . import tasks
from .figures import format_figures  # noqa: F401  (re-export)
from .paths import world_dir
from .sft import ModelSpec, TrainSpec, make_model, num_params, train
from .tokenizer import build_tokenizer

WORLD_VERSION = "3"  # 2: Qwen2Tokenizer-compatible char vocabulary; 3: teacher SFT at batch 16 (build <= 5 min)


@dataclass(frozen=True)
class SizeConfig:
    cells: list[tuple[int, int]]  # (num_operands, digits)
    cell_weights: list[float]
    teacher: ModelSpec
    teacher_train: TrainSpec
    student: ModelSpec
    student_train: TrainSpec
    train_rows_per_cell: int
    test_rows_per_cell: int
    verbose_eval_rows: int
    sample_n: int = 8
    # Uncontended 2 cores: one process with 2 torch threads is fastest (teacher step 0.15 s vs 0.26 s
    # with 1 thread). On a CPU shared with other jobs 2 threads stall badly; there --parallel (teacher and
    # student in two processes, 1 thread each) was 2-5x faster. The weights can differ in the last bits
    # between thread counts, so both are part of the world's configuration.
    parallel_train: bool = False
    train_threads: int = 2
    eval_max_new_tokens: tuple[int, int] = (96, 256)  # concise, verbose
    sample_eval_rows: int = 200  # problems (an even stride over test) for the n-sample figures
    targets: dict = field(default_factory=dict)


SIZES: dict[str, SizeConfig] = {
    "full": SizeConfig(
        cells=[(2, 1), (3, 1), (4, 1), (5, 1), (6, 1)],
        cell_weights=[1.0, 1.5, 2.0, 2.5, 3.0],
        teacher=ModelSpec(hidden_size=96, num_layers=3, num_heads=4, intermediate_size=384),
        # 1500 x 16 problems (30 % of the batches verbose, same size): 0.3x the tokens of world v2's 1300 x 64,
        # teacher greedy 0.971 >= 0.90, build 247 s on a slow 2-core CPU (recipes/tinyworld/README.md, "World v3").
        teacher_train=TrainSpec(steps=1500, batch_size=16, verbose_frac=0.3, verbose_batch_div=1),
        student=ModelSpec(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256),
        student_train=TrainSpec(steps=800, batch_size=64),
        train_rows_per_cell=2000,
        test_rows_per_cell=100,
        verbose_eval_rows=100,
        targets={
            "build_seconds_max": 300,
            "teacher_greedy_acc_min": 0.90,
            "student_greedy_acc_range": [0.20, 0.60],
            "student_frac_mixed_min": 0.20,
        },
    ),
    "small": SizeConfig(
        cells=[(2, 1), (3, 1)],
        cell_weights=[1.0, 1.0],
        teacher=ModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position_embeddings=256),
        teacher_train=TrainSpec(steps=40, batch_size=16),
        student=ModelSpec(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position_embeddings=256),
        student_train=TrainSpec(steps=20, batch_size=16),
        train_rows_per_cell=64,
        test_rows_per_cell=16,
        verbose_eval_rows=8,
        sample_n=4,
        eval_max_new_tokens=(32, 64),
        parallel_train=False,  # spawning costs more than these models' training
        train_threads=1,
    ),
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def _versions() -> dict:
    import tokenizers
    import transformers

    from verl_frontier import __name__ as _  # noqa: F401

    try:
        from importlib.metadata import version

        pkg = version("verl-frontier")
    except Exception:
        pkg = "unknown"
    return {
        "world_version": WORLD_VERSION,
        "verl_frontier": pkg,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------- data


def make_datasets(cfg: SizeConfig, seed: int) -> dict[str, list[dict]]:
    """train/test rows in both styles. The concise and verbose files hold the same problems."""
    rng = random.Random(f"tinyworld-data-{seed}")
    problems: dict[str, list[tasks.Problem]] = {"train": [], "test": []}
    for k, d in cfg.cells:
        for _ in range(cfg.train_rows_per_cell):
            problems["train"].append(tasks.sample_split_problem(rng, k, d, "train"))
        seen: set[str] = set()
        got = 0
        for _ in range(cfg.test_rows_per_cell * 50):
            if got >= cfg.test_rows_per_cell:
                break
            p = tasks.sample_split_problem(rng, k, d, "test")
            if p.expression in seen:
                continue
            seen.add(p.expression)
            problems["test"].append(p)
            got += 1
    rng.shuffle(problems["train"])
    out = {}
    for split, probs in problems.items():
        for style in tasks.STYLES:
            name = split if style == "concise" else f"{split}_verbose"
            out[name] = [tasks.make_row(p, style, split, i) for i, p in enumerate(probs)]
    return out


def write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    pq.write_table(table, path)


# ----------------------------------------------------------------------------- figures


def _score_rows(rows, outputs) -> list[list[float]]:
    from .reward import compute_score

    scores = []
    for row, outs in zip(rows, outputs):
        gt = row["reward_model"]["ground_truth"]
        scores.append([compute_score(row["data_source"], o["text"], gt, row["extra_info"])["score"] for o in outs])
    return scores


def measure(
    model,
    tokenizer,
    rows_concise,
    rows_verbose,
    *,
    sample_n: int | None,
    seed: int,
    max_new_tokens=(96, 256),
    sample_rows: int | None = None,
) -> dict:
    from verl_frontier.evaluation.generate import generate

    figs: dict = {}
    t0 = time.perf_counter()
    greedy = generate(
        model, tokenizer, [r["prompt"] for r in rows_concise], greedy=True, max_new_tokens=max_new_tokens[0]
    )
    sc = _score_rows(rows_concise, greedy)
    figs["greedy_acc"] = round(sum(s[0] for s in sc) / len(sc), 4)
    by_k: dict[int, list[float]] = {}
    for r, s in zip(rows_concise, sc):
        by_k.setdefault(r["extra_info"]["num_operands"], []).append(s[0])
    figs["greedy_acc_by_operands"] = {str(k): round(sum(v) / len(v), 4) for k, v in sorted(by_k.items())}
    figs["concise_mean_response_tokens"] = round(sum(o[0]["num_tokens"] for o in greedy) / len(greedy), 2)
    figs["concise_recheck_rate"] = round(sum("Check:" in o[0]["text"] for o in greedy) / len(greedy), 4)
    if rows_verbose:
        vg = generate(
            model, tokenizer, [r["prompt"] for r in rows_verbose], greedy=True, max_new_tokens=max_new_tokens[1]
        )
        vs = _score_rows(rows_verbose, vg)
        figs["verbose_greedy_acc"] = round(sum(s[0] for s in vs) / len(vs), 4)
        figs["verbose_mean_response_tokens"] = round(sum(o[0]["num_tokens"] for o in vg) / len(vg), 2)
        figs["verbose_recheck_rate"] = round(sum("Check:" in o[0]["text"] for o in vg) / len(vg), 4)
        figs["verbose_num_problems"] = len(rows_verbose)
    if sample_n:
        m = len(rows_concise) if not sample_rows else min(sample_rows, len(rows_concise))
        rows_s = [rows_concise[(i * len(rows_concise)) // m] for i in range(m)]  # even spread over the cells
        samples = generate(
            model,
            tokenizer,
            [r["prompt"] for r in rows_s],
            n=sample_n,
            temperature=1.0,
            max_new_tokens=max_new_tokens[0],
            seed=seed,
        )
        ss = _score_rows(rows_s, samples)
        rates = [sum(s) / len(s) for s in ss]
        figs["sampled_n"] = sample_n
        figs["sampled_num_problems"] = len(rows_s)
        figs["sampled_mean_pass_rate"] = round(sum(rates) / len(rates), 4)
        figs["frac_pass_rate_0"] = round(sum(r == 0 for r in rates) / len(rates), 4)
        figs["frac_pass_rate_mixed"] = round(sum(0 < r < 1 for r in rates) / len(rates), 4)
        figs["frac_pass_rate_1"] = round(sum(r == 1 for r in rates) / len(rates), 4)
    figs["num_problems"] = len(rows_concise)
    figs["eval_seconds"] = round(time.perf_counter() - t0, 2)
    return figs


# ----------------------------------------------------------------------------- build


def _cpu_seconds() -> float:
    """CPU seconds of this process plus its finished children (the training workers)."""
    import resource

    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


ROLES = ("teacher", "student")


def role_specs(cfg: SizeConfig, role: str) -> tuple[ModelSpec, TrainSpec]:
    """The model and SFT specs of one role ("teacher" or "student") of a world size."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return (cfg.teacher, cfg.teacher_train) if role == "teacher" else (cfg.student, cfg.student_train)


def model_seed(world_seed: int, role: str) -> int:
    """The seed a role's model init and SFT batches use in a world built from ``world_seed``."""
    return world_seed * 1000 + 1 + ROLES.index(role)


def _train_role(job, threads: int = 1) -> tuple[str, dict]:
    """Train and save one model (runs in a worker process or in-process). Deterministic from its seed."""
    role, size, mseed, tmp, progress, position = job
    torch.set_num_threads(threads)
    from transformers import AutoTokenizer

    cfg = SIZES[size]
    mspec, tspec = role_specs(cfg, role)
    tokenizer = AutoTokenizer.from_pretrained(Path(tmp) / "tokenizer")
    model = make_model(mspec, tokenizer, mseed)
    stats = train(
        model,
        tokenizer,
        tspec,
        cfg.cells,
        cfg.cell_weights,
        mseed,
        desc=f"sft {role}",
        progress=progress,
        position=position,
    )
    model.save_pretrained(Path(tmp) / role)
    tokenizer.save_pretrained(Path(tmp) / role)
    return role, {"params": num_params(model), "model_spec": asdict(mspec), "torch_threads": threads, **stats}


def config_hash(cfg: SizeConfig) -> str:
    """Hash of everything that shapes a world of this size (models, training, data sizes)."""
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached(out: Path, seed: int, size: str) -> dict | None:
    mf = out / "manifest.json"
    if not mf.exists():
        return None
    try:
        m = json.loads(mf.read_text())
    except Exception:
        return None
    if m.get("seed") != seed or m.get("size") != size or m.get("versions", {}).get("world_version") != WORLD_VERSION:
        return None
    if m.get("config_hash") != config_hash(SIZES[size]):
        return None
    if not all((out / rel).exists() for rel in m.get("files", {})):
        return None
    return m


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[tinyworld] {msg}", flush=True)


def build(
    out: str | Path | None = None,
    seed: int = 0,
    size: str = "full",
    force: bool = False,
    quiet: bool = False,
    threads: int | None = None,
    progress: bool = True,
    parallel: bool | None = None,
) -> dict:
    """Build (or reuse) a tiny world; returns its manifest.

    The world is built in a fresh directory next to ``out`` and renamed into place once its manifest is
    written: an interrupted build leaves no partial world, and a rebuild (``force``, or a stale world)
    replaces the old world as a whole only when the new one is complete.

    ``out``: world dir (default ``world_dir(size, seed)``); ``force``: rebuild even if cached;
    ``threads``: torch threads for the in-process work (default: the size's ``train_threads``);
    ``parallel``: train teacher and student in two spawned processes with 1 thread each (default: the
    size's ``parallel_train``; faster on a CPU shared with other jobs). With equal thread counts the
    results do not depend on ``parallel``.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    cfg = SIZES[size]
    out = Path(out) if out is not None else world_dir(size, seed)
    if not force:
        cached = _cached(out, seed, size)
        if cached is not None:
            _log(f"cached world at {out} (seed={seed}, size={size})", quiet)
            return cached

    t_start = time.perf_counter()
    c_start = _cpu_seconds()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads or cfg.train_threads)
    try:
        with building_dir(out) as tmp:
            manifest = _build_into(tmp, cfg, seed, size, quiet, progress, parallel, t_start, c_start)
        _log(f"built {out} in {manifest['figures']['timings']['build_seconds']} s", quiet)
        if not quiet:
            print(format_figures(manifest))
        return manifest
    finally:
        torch.set_num_threads(old_threads)


def _build_into(
    tmp: Path,
    cfg: SizeConfig,
    seed: int,
    size: str,
    quiet: bool,
    progress: bool,
    parallel: bool | None,
    t_start: float,
    c_start: float,
) -> dict:
    """Every file of the world in the fresh directory ``tmp`` (the manifest last); returns the manifest."""
    (tmp / "data").mkdir(parents=True)
    timings = {}

    t = time.perf_counter()
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(tmp / "tokenizer")
    data = make_datasets(cfg, seed)
    for name, rows in data.items():
        write_parquet(rows, tmp / "data" / f"{name}.parquet")
    timings["data_seconds"] = round(time.perf_counter() - t, 2)
    _log("data: " + ", ".join(f"{k}={len(v)}" for k, v in data.items()), quiet)

    figures: dict = {}
    jobs = [
        (role, size, model_seed(seed, role), str(tmp), progress and not quiet, position)
        for position, role in enumerate(ROLES)
    ]
    for role in ROLES:
        mspec, tspec = role_specs(cfg, role)
        _log(f"{role}: {mspec} {tspec.steps} SFT steps", quiet)
    t = time.perf_counter()
    if parallel is None:
        parallel = cfg.parallel_train and (os.cpu_count() or 1) >= 2
    if parallel:
        # teacher and student train at once, one process and one thread each: on 2 cores this beats
        # 2 threads per model (tiny matmuls scale badly, and much worse when the CPU is shared)
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=len(jobs), mp_context=mp.get_context("spawn")) as ex:
            results = list(ex.map(_train_role, jobs))
    else:
        results = [_train_role(j, threads=torch.get_num_threads()) for j in jobs]
    timings["train_wall_seconds"] = round(time.perf_counter() - t, 2)
    from transformers import AutoModelForCausalLM

    models = {}
    for role, stats in results:
        figures[role] = stats
        timings[f"{role}_train_seconds"] = stats["train_seconds"]
        models[role] = AutoModelForCausalLM.from_pretrained(tmp / role, dtype=torch.float32).eval()

    t = time.perf_counter()
    verbose_rows = data["test_verbose"][: cfg.verbose_eval_rows]
    for role, model in models.items():
        figs = measure(
            model,
            tokenizer,
            data["test"],
            verbose_rows,
            sample_n=cfg.sample_n if role == "student" else None,
            seed=seed,
            max_new_tokens=cfg.eval_max_new_tokens,
            sample_rows=cfg.sample_eval_rows,
        )
        figures[role].update(figs)
    timings["eval_seconds"] = round(time.perf_counter() - t, 2)

    timings["build_seconds"] = round(time.perf_counter() - t_start, 2)
    # CPU seconds of this process: on a machine shared with other jobs, cpu_seconds / threads is a
    # better estimate of the wall time on free cores than build_seconds
    timings["cpu_seconds"] = round(_cpu_seconds() - c_start, 2)
    figures["timings"] = timings
    figures["targets"] = _check_targets(cfg, figures)

    manifest = {
        "seed": seed,
        "size": size,
        "config_hash": config_hash(cfg),
        "versions": _versions(),
        "built_at_unix": int(time.time()),
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },
        "layout": {
            "tokenizer": "tokenizer/",
            "teacher": "teacher/",
            "student": "student/",
            "train": "data/train.parquet",
            "test": "data/test.parquet",
            "train_verbose": "data/train_verbose.parquet",
            "test_verbose": "data/test_verbose.parquet",
        },
        "task": {
            "data_source": tasks.DATA_SOURCE,
            "cells": [list(c) for c in cfg.cells],
            "concise_instruction": tasks.CONCISE_INSTRUCTION,
            "verbose_frac_batches": {role: role_specs(cfg, role)[1].verbose_frac for role in ROLES},
            "reward": "verl_frontier.tinyworld.reward:compute_score",
        },
        "figures": figures,
        "files": file_hashes(tmp),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _check_targets(cfg: SizeConfig, figures: dict) -> dict:
    t = cfg.targets
    if not t:
        return {}
    res = {
        "build_seconds": [
            figures["timings"]["build_seconds"],
            figures["timings"]["build_seconds"] <= t["build_seconds_max"],
        ],
        "teacher_greedy_acc": [
            figures["teacher"]["greedy_acc"],
            figures["teacher"]["greedy_acc"] >= t["teacher_greedy_acc_min"],
        ],
        "student_greedy_acc": [
            figures["student"]["greedy_acc"],
            t["student_greedy_acc_range"][0] <= figures["student"]["greedy_acc"] <= t["student_greedy_acc_range"][1],
        ],
        "student_frac_mixed": [
            figures["student"]["frac_pass_rate_mixed"],
            figures["student"]["frac_pass_rate_mixed"] >= t["student_frac_mixed_min"],
        ],
    }
    return {k: {"value": v, "met": bool(ok)} for k, (v, ok) in res.items()}
