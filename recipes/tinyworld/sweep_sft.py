"""Train one tiny-world role with other SFT steps / lr and print its build figures (one JSON line).

Used for the "Can the build fit 5 minutes" table in this folder's README:
    .venv/bin/python recipes/tinyworld/sweep_sft.py teacher 550 3e-3 [--world .world/full-seed0]
Same model spec, seed and batch recipe as the world's own build (its manifest's size and seed); only the SFT
settings given on the command line change (steps, lr, and optionally batch size, warm-up, weight decay, verbose share).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pyarrow.parquet as pq
import torch
from transformers import AutoTokenizer

from verl_frontier.arguments import (
    FRACTION,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    PROBABILITY,
    ArgumentParser,
    float_range,
    tiny_world,
)
from verl_frontier.tinyworld.builder import SIZES, measure, model_seed, role_specs
from verl_frontier.tinyworld.paths import world_dir
from verl_frontier.tinyworld.sft import make_model, train


def main(argv: list[str] | None = None) -> None:
    ap = ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("role", choices=["teacher", "student"])
    ap.add_argument("steps", type=POSITIVE_INT)
    ap.add_argument("lr", type=POSITIVE_FLOAT)
    ap.add_argument("--world", type=tiny_world, default=None, help="a built world (default: the full world of seed 0)")
    ap.add_argument("--threads", type=POSITIVE_INT, default=2)
    ap.add_argument(
        "--batch", type=POSITIVE_INT, default=None, help="problems per concise batch (default: the world's)"
    )
    ap.add_argument("--warmup-frac", type=FRACTION, default=None)
    ap.add_argument("--weight-decay", type=float_range(0.0), default=None)
    ap.add_argument("--verbose-frac", type=PROBABILITY, default=None)
    ap.add_argument("--verbose-batch-div", type=POSITIVE_INT, default=None)
    args = ap.parse_args(argv)
    world = args.world
    if world is None:
        try:
            world = tiny_world.parse(world_dir("full", 0))
        except ValueError as exc:
            ap.error(f"argument --world: {exc}")
    manifest = json.loads((world / "manifest.json").read_text())
    torch.set_num_threads(args.threads)
    cfg = SIZES[manifest["size"]]
    seed = model_seed(manifest["seed"], args.role)
    mspec, tspec = role_specs(cfg, args.role)
    overrides = {
        "steps": args.steps,
        "lr": args.lr,
        "batch_size": args.batch,
        "warmup_frac": args.warmup_frac,
        "weight_decay": args.weight_decay,
        "verbose_frac": args.verbose_frac,
        "verbose_batch_div": args.verbose_batch_div,
    }
    tspec = replace(tspec, **{key: value for key, value in overrides.items() if value is not None})
    tok = AutoTokenizer.from_pretrained(world / "tokenizer")
    model = make_model(mspec, tok, seed)
    stats = train(model, tok, tspec, cfg.cells, cfg.cell_weights, seed, progress=True)
    test = pq.read_table(world / "data/test.parquet").to_pylist()
    verbose = pq.read_table(world / "data/test_verbose.parquet").to_pylist()[: cfg.verbose_eval_rows]
    figs = measure(  # as the build measures its models
        model,
        tok,
        test,
        verbose,
        sample_n=cfg.sample_n if args.role == "student" else None,
        seed=manifest["seed"],
        max_new_tokens=cfg.eval_max_new_tokens,
        sample_rows=cfg.sample_eval_rows,
    )
    keep = ["greedy_acc", "greedy_acc_by_operands", "verbose_greedy_acc", "frac_pass_rate_mixed"]
    row = {"role": args.role, **asdict(tspec), "train_seconds": stats["train_seconds"]}
    print(json.dumps({**row, **{k: figs.get(k) for k in keep}}))


if __name__ == "__main__":
    main()
