"""SLM compression in the tiny world: distilled -> pruned -> re-distilled (verl on CPU) -> int8, measured per stage.

Stages (arXiv 2502.14305's pipeline after its distillation step):

1. ``distilled``     the tiny world's teacher (the model to compress).
2. ``pruned``        one-shot structured pruning (``verl_frontier.slm_compress.prune``): MLP channels and attention
                     KV groups with the lowest calibration-activation importance removed (default 50% / 50%).
3. ``redistilled``   the pruned model distilled on-policy from the UNPRUNED model through verl's real trainer on
                     CPU (``recipes/slm_compress/slm_compress_tiny.yaml``: top-k forward KL), merged to HF.
4. ``quantized``     the re-distilled model with int8 weight-only quantization (torchao), an HF checkpoint.
   ``distilled_int8`` (reference) the unpruned model quantized the same way.

Per stage: parameters, on-disk weight bytes, CPU generation latency (greedy HF ``generate`` of exactly 32 tokens,
batch 1, 1 thread, median over 8 fixed prompts, under the machine lock) and greedy accuracy on the held-out set.

    python recipes/slm_compress/reproduce.py [--steps 300] [--mlp-sparsity 0.5] [--attn-sparsity 0.5]

Writes ``<out>/results.json`` (resumable per stage), prints a markdown table, and saves
``recipes/slm_compress/slm_compress_tiny_world.png`` and ``recipes/slm_compress/results.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from verl_frontier.arguments import FRACTION, POSITIVE_INT, SEED, ArgumentParser, output_dir, savefig_atomic
from verl_frontier.studies import Arm, final_checkpoint, machine_lock, run_arm, write_json_atomic
from verl_frontier.tinyworld.paths import repo_root

STAGES = ("distilled", "pruned", "redistilled", "quantized", "distilled_int8")


def markdown_table(results: dict) -> str:
    rows = [
        "| stage | parameters | on-disk weights | CPU latency, batch 1 (ms / token) | CPU throughput, batch 64 "
        "(tokens / s) | held-out greedy accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for stage in STAGES:
        m = results["stages"].get(stage, {}).get("measure")
        if m:
            rows.append(
                f"| {stage} | {m['params']:,} | {m['disk_bytes'] / 1024:.0f} KiB | {m['ms_per_token']:.2f} | "
                f"{m['tokens_per_s']:,.0f} | "
                f"{m['accuracy']:.3f} ({m['num_problems']} problems) |"
            )
    return "\n".join(rows)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in STAGES if results["stages"].get(s, {}).get("measure")]
    ms = [results["stages"][s]["measure"] for s in stages]
    panels = [
        ("parameters (K)", [m["params"] / 1e3 for m in ms]),
        ("on-disk weights (KiB)", [m["disk_bytes"] / 1024 for m in ms]),
        ("CPU latency, batch 1 (ms / token)", [m["ms_per_token"] for m in ms]),
        ("CPU throughput, batch 64 (tokens / s)", [m["tokens_per_s"] for m in ms]),
        ("held-out greedy accuracy", [m["accuracy"] for m in ms]),
    ]
    fig, axes = plt.subplots(1, 5, figsize=(19, 3.8))
    for ax, (title, values) in zip(axes, panels):
        ax.bar(range(len(stages)), values, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"][: len(stages)])
        ax.set_xticks(range(len(stages)), stages, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:,.0f}" if v >= 100 else f"{v:.3g}", ha="center", va="bottom", fontsize=7)
    fig.suptitle("SLM compression, tiny world (verl on CPU for re-distillation)", fontsize=11)
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=POSITIVE_INT, default=300, help="re-distillation steps")
    parser.add_argument("--test-freq", type=POSITIVE_INT, default=25)
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--mlp-sparsity", type=FRACTION, default=0.5, help="in [0, 1)")
    parser.add_argument("--attn-sparsity", type=FRACTION, default=0.5, help="in [0, 1)")
    parser.add_argument("--importance", default="activation", choices=["activation", "weight"])
    parser.add_argument("--calib", type=POSITIVE_INT, default=256, help="calibration examples (train split)")
    parser.add_argument("--limit", type=POSITIVE_INT, default=None, help="held-out problems to score (default: all)")
    parser.add_argument("--out", type=output_dir, default=repo_root() / "outputs" / "slm_compress")
    args, extra = parser.parse_with_overrides(argv)

    import torch
    from transformers import AutoModelForCausalLM

    from verl_frontier.evaluation.checkpoint import resolve_checkpoint
    from verl_frontier.slm_compress.measure import calibration_texts, measure_checkpoint
    from verl_frontier.slm_compress.prune import PruneSpec, copy_tokenizer_files, prune_checkpoint
    from verl_frontier.slm_compress.quantize import quantize_checkpoint
    from verl_frontier.tinyworld import build
    from verl_frontier.tinyworld.paths import world_dir

    spec = PruneSpec(args.mlp_sparsity, args.attn_sparsity, args.importance)
    spec.validate()  # bad settings fail before any work
    world = world_dir("full", 0)
    build(out=world, seed=0, size="full")
    teacher, test, train = world / "teacher", world / "data" / "test.parquet", world / "data" / "train.parquet"
    out = args.out.resolve()  # verl runs with its run directory as cwd
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"stages": {}}
    results["settings"] = {**vars(args), "out": str(out), "extra": extra}
    stages = results["stages"]

    def save():
        write_json_atomic(results_path, results)

    if "distilled" not in stages:
        stages["distilled"] = {"path": str(teacher)}
    if "pruned" not in stages:
        from transformers import AutoTokenizer

        texts = calibration_texts(train, AutoTokenizer.from_pretrained(teacher), args.calib)
        info = prune_checkpoint(teacher, out / "pruned", spec, texts)
        stages["pruned"] = {"path": str(out / "pruned"), "prune": info}
        save()
    if "redistilled" not in stages:
        arm = Arm("redistill", "slm_compress", "slm_compress_tiny", [f"actor_rollout_ref.model.path={out / 'pruned'}"])
        run_dir = out / "redistill"
        print(f"re-distilling {out / 'pruned'} from {teacher}: {args.steps} steps through verl", flush=True)
        run = run_arm(arm, args.seed, run_dir, args.steps, args.test_freq, world, extra=extra, save_final=True)
        hf = resolve_checkpoint(final_checkpoint(run_dir, args.steps))
        dst = out / "redistilled"
        shutil.rmtree(dst, ignore_errors=True)
        # verl's merger writes bf16; store float32 like the other stages (same dtype -> comparable size/latency)
        AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).save_pretrained(dst)
        copy_tokenizer_files(teacher, dst)
        stages["redistilled"] = {
            "path": str(dst),
            "wall_s": run["wall_s"],
            "val_acc": {str(k): v for k, v in run["val_acc"].items()},
        }
        save()
    if "quantized" not in stages:
        quantize_checkpoint(out / "redistilled", out / "quantized", "int8")
        stages["quantized"] = {"path": str(out / "quantized"), "scheme": "int8"}
        save()
    if "distilled_int8" not in stages:
        quantize_checkpoint(teacher, out / "distilled_int8", "int8")
        stages["distilled_int8"] = {"path": str(out / "distilled_int8"), "scheme": "int8"}
        save()

    for stage in STAGES:
        if "measure" not in stages[stage]:
            with machine_lock():  # latency is only meaningful with the machine to ourselves
                stages[stage]["measure"] = measure_checkpoint(stages[stage]["path"], test, limit=args.limit)
            save()
            print(stage, stages[stage]["measure"], flush=True)

    table = markdown_table(results)
    print(table)
    here = Path(__file__).resolve().parent
    plot(results, here / "slm_compress_tiny_world.png")
    (here / "results.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
