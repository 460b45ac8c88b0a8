"""Saddle-point escape of ASG / AGLD / ASGLD vs gradient descent across dimensions (the paper's O(log d) claim).

f(x) = Σ λ_i x_i² + ¼ Σ x_i⁴ with λ = (−1, 1, ..., 1), started at the strict saddle x = 0
(``verl_frontier.asgld.saddle``); iterations until f ≤ −½ (the minimum is −1), median over seeds. Gradient
descent from the exact saddle never moves (zero gradient); "GD nudged" starts 1e-6 along the escape direction.
ASG gets stochastic gradients (N(0, 0.01²) per coordinate), the others exact gradients.

    python benchmarks/asgld_saddle_escape.py [--dims 10 100 1000 10000 100000] [--seeds 5]
        [--png recipes/asgld_grpo/saddle_escape.png] [--out benchmarks/results/asgld_saddle_escape.json]
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from verl_frontier.arguments import POSITIVE_INT, ArgumentParser, output_file, savefig_atomic, write_text_atomic
from verl_frontier.asgld import AGLD, ASG, ASGLD
from verl_frontier.asgld.saddle import escape_iterations

REPO = Path(__file__).resolve().parents[1]
MAX_ITERATIONS = 3000

METHODS = {
    "GD (exact saddle)": (lambda p, s: torch.optim.SGD(p, lr=0.05), {}),
    "GD (nudged 1e-6)": (lambda p, s: torch.optim.SGD(p, lr=0.05), {"start_offset": 1e-6}),
    "ASG (stochastic g)": (lambda p, s: ASG(p, lr=0.01, seed=s), {"gradient_noise": 0.01}),
    "AGLD": (lambda p, s: AGLD(p, lr=0.05, noise_scale=0.01, noise_threshold=0.01, seed=s), {}),
    "ASGLD": (lambda p, s: ASGLD(p, lr=0.01, noise_scale=0.01, noise_threshold=0.01, seed=s), {}),
}


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=POSITIVE_INT, nargs="+", default=[10, 100, 1000, 10000, 100000])
    parser.add_argument("--seeds", type=POSITIVE_INT, default=5)
    parser.add_argument("--png", type=output_file, default=str(REPO / "recipes" / "asgld_grpo" / "saddle_escape.png"))
    parser.add_argument(
        "--out", type=output_file, default=str(REPO / "benchmarks" / "results" / "asgld_saddle_escape.json")
    )
    args = parser.parse_args(argv)

    table: dict[str, dict[int, float | None]] = {name: {} for name in METHODS}
    for dim in args.dims:
        for name, (make, kwargs) in METHODS.items():
            runs = [
                escape_iterations(lambda p, s=seed, m=make: m(p, s), dim, MAX_ITERATIONS, seed=seed, **kwargs)
                for seed in range(args.seeds)
            ]
            table[name][dim] = None if any(r is None for r in runs) else statistics.median(runs)
        print(f"d={dim:>7}: " + "  ".join(f"{n}={table[n][dim]}" for n in METHODS), flush=True)

    header = "| d | " + " | ".join(METHODS) + " |"
    print("\n" + header + "\n|" + "---|" * (len(METHODS) + 1))
    for dim in args.dims:
        cells = [f"{table[n][dim]:.0f}" if table[n][dim] is not None else f"> {MAX_ITERATIONS}" for n in METHODS]
        print(f"| {dim:,} | " + " | ".join(cells) + " |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in METHODS:
        xs = [d for d in args.dims if table[name][d] is not None]
        if xs:
            ax.plot(xs, [table[name][d] for d in xs], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("dimension d")
    ax.set_ylabel(f"iterations to escape (median of {args.seeds} seeds)")
    ax.set_title("Escape from a strict saddle (GD from the exact saddle never escapes)")
    ax.legend()
    fig.tight_layout()
    savefig_atomic(fig, args.png, dpi=120)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"max_iterations": MAX_ITERATIONS, "seeds": args.seeds, "iterations": table}
    write_text_atomic(out, json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {out} and {args.png}")


if __name__ == "__main__":
    main()
