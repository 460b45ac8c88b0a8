"""Chunked full-vocabulary KD loss vs a naive PyTorch implementation: peak memory, time, gradient agreement.

Workload (defaults): T = 4096 tokens, V = 151,936 (Qwen's vocabulary), float32 student and teacher logits,
per-token loss times a fixed random per-token weight, summed, forward + backward w.r.t. the student logits.

- naive: ``s = log_softmax(z_S)``, ``t = log_softmax(z_T)``, elementwise KL with ``F.kl_div(..., log_target=True)``
  (forward KL: KL(T || S) = kl_div(s, t); reverse KL: KL(S || T) = kl_div(t, s)), sum over V, backward.
- chunked: :func:`verl_frontier.kd.chunked.chunked_divergence` (``--chunk-size`` tokens per chunk).

How memory is measured. PyTorch's CPU allocator is not instrumented (no ``torch.cuda.max_memory_allocated``
equivalent), so each (variant, loss) runs in a FRESH subprocess which (1) builds the inputs from a fixed seed
(in place, no transient copies), (2) resets the kernel's peak-RSS mark to the current RSS (``echo 5 >
/proc/self/clear_refs``) and reads it (``VmHWM``; the baseline: interpreter + torch + the two input tensors),
(3) runs forward + backward ``--repeats`` times (freeing everything in between), (4) reads ``VmHWM`` again
(``ru_maxrss`` where /proc is unavailable). The reported peak is the difference: the high-water mark of
everything the loss computation itself needed above its inputs (including the student's [T, V] gradient, which
both variants must produce). glibc returns large blocks to the OS on free, so RSS follows live tensors closely.

Time: wall time of forward + backward per repeat (median reported; the same page-faulting fresh allocations
happen in every repeat for both variants). Gradients: the naive subprocess, after its measured runs, also
computes the chunked gradient on the same inputs and reports max |grad_chunked - grad_naive| and the max
per-token loss difference, plus each float32 variant's error against a float64 naive reference on the first
``--reference-rows`` tokens (rows are independent), which says which of the two differs from the truth.

The full size needs ~17 GiB for the naive variant; on the shared machine run it under the machine lock::

    flock /tmp/verl-frontier-machine.lock .venv/bin/python benchmarks/chunked_kd_loss.py \\
        --json benchmarks/results/chunked_kd_loss.json

Targets: peak memory ratio (chunked / naive) <= 0.25, time ratio <= 1.0, max |grad diff| <= 1e-5.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from verl_frontier.arguments import (
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    PROBABILITY,
    SEED,
    ArgumentParser,
    csv_choices,
    output_file,
    write_text_atomic,
)
from verl_frontier.kd.kinds import KINDS

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"memory_ratio": 0.25, "time_ratio": 1.0, "max_grad_diff": 1e-5}


def _maxrss_bytes() -> int:
    """Peak RSS of this process: /proc/self/status VmHWM (resettable, see _reset_peak), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _reset_peak() -> bool:
    """Reset the peak-RSS high-water mark to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _inputs(tokens: int, vocab: int, seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    # in place: no transient [T, V] copy that would raise the baseline's high-water mark
    student = torch.randn(tokens, vocab, generator=gen).mul_(3.0).requires_grad_()
    teacher = torch.randn(tokens, vocab, generator=gen).mul_(3.0)
    weight = torch.rand(tokens, generator=gen)
    return student, teacher, weight


def _naive(student, teacher, kind: str, beta: float):
    import torch
    import torch.nn.functional as F

    s = F.log_softmax(student, dim=-1)
    t = F.log_softmax(teacher, dim=-1)
    if kind == "forward_kl":
        return F.kl_div(s, t, reduction="none", log_target=True).sum(-1)
    if kind == "reverse_kl":
        return F.kl_div(t, s, reduction="none", log_target=True).sum(-1)
    log_m = torch.logsumexp(torch.stack([s + torch.log1p(torch.tensor(-beta)), t + torch.log(torch.tensor(beta))]), 0)
    kl_t = F.kl_div(log_m, t, reduction="none", log_target=True).sum(-1)
    kl_s = F.kl_div(log_m, s, reduction="none", log_target=True).sum(-1)
    return beta * kl_t + (1 - beta) * kl_s


def _chunked(student, teacher, kind: str, beta: float, chunk_size: int):
    from verl_frontier.kd.chunked import chunked_divergence

    return chunked_divergence(student, teacher, kind, beta=beta, chunk_size=chunk_size)


def worker(args) -> dict:
    """One variant in this (fresh) process; prints a JSON line."""
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    student, teacher, weight = _inputs(args.tokens, args.vocab, args.seed)
    peak_reset = _reset_peak()
    baseline = _maxrss_bytes()
    times = []
    for _ in range(args.repeats):
        student.grad = None
        start = time.perf_counter()
        if args.worker == "naive":
            losses = _naive(student, teacher, args.kind, args.beta)
        else:
            losses = _chunked(student, teacher, args.kind, args.beta, args.chunk_size)
        (losses * weight).sum().backward()
        times.append(time.perf_counter() - start)
        del losses
    peak = _maxrss_bytes()
    result = {
        "variant": args.worker,
        "kind": args.kind,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
        "peak_delta_bytes": peak - baseline,
        "times_s": times,
        "peak_reset_via_clear_refs": peak_reset,
        "threads": torch.get_num_threads(),
    }
    if args.worker == "naive" and args.compare:
        naive_grad = student.grad
        naive_losses = _naive(student.detach(), teacher, args.kind, args.beta)
        student.grad = None
        chunked_losses = _chunked(student, teacher, args.kind, args.beta, args.chunk_size)
        (chunked_losses * weight).sum().backward()
        result["max_grad_diff"] = float((student.grad - naive_grad).abs().max())
        result["max_loss_diff"] = float((chunked_losses.detach() - naive_losses).abs().max())
        result["mean_loss"] = float(naive_losses.mean())
        # which of the two float32 results is closer to the truth: float64 reference on the first rows
        rows = min(args.reference_rows, args.tokens)
        ref_student = student.detach()[:rows].double().requires_grad_()
        ref_losses = _naive(ref_student, teacher[:rows].double(), args.kind, args.beta)
        (ref_losses * weight[:rows].double()).sum().backward()
        ref_grad = ref_student.grad
        result["float64_reference_rows"] = rows
        result["naive_grad_err_vs_float64"] = float((naive_grad[:rows].double() - ref_grad).abs().max())
        result["chunked_grad_err_vs_float64"] = float((student.grad[:rows].double() - ref_grad).abs().max())
        result["naive_loss_err_vs_float64"] = float((naive_losses[:rows].double() - ref_losses.detach()).abs().max())
        result["chunked_loss_err_vs_float64"] = float(
            (chunked_losses.detach()[:rows].double() - ref_losses.detach()).abs().max()
        )
    print("RESULT " + json.dumps(result), flush=True)
    return result


def _run_worker(args, variant: str, kind: str) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        variant,
        "--kind",
        kind,
        "--tokens",
        str(args.tokens),
        "--vocab",
        str(args.vocab),
        "--chunk-size",
        str(args.chunk_size),
        "--repeats",
        str(args.repeats),
        "--seed",
        str(args.seed),
        "--beta",
        str(args.beta),
        "--threads",
        str(args.threads),
        "--reference-rows",
        str(args.reference_rows),
    ]
    if variant == "naive" and not args.no_compare:
        cmd.append("--compare")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{variant}/{kind} worker failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=POSITIVE_INT, default=4096)
    parser.add_argument("--vocab", type=POSITIVE_INT, default=151_936)
    parser.add_argument("--chunk-size", type=POSITIVE_INT, default=32)
    parser.add_argument("--repeats", type=POSITIVE_INT, default=3)
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--beta", type=PROBABILITY, default=0.5, help="JSD beta, in [0, 1]")
    parser.add_argument("--threads", type=NON_NEGATIVE_INT, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--kinds", type=csv_choices(*KINDS), default="forward_kl,reverse_kl", help="comma list of " + ",".join(KINDS)
    )
    parser.add_argument("--no-compare", action="store_true", help="skip the gradient comparison")
    parser.add_argument(
        "--reference-rows", type=POSITIVE_INT, default=64, help="rows checked against a float64 reference"
    )
    parser.add_argument("--json", metavar="OUT", type=output_file, help="write results json (benchmarks/results/...)")
    parser.add_argument("--worker", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--compare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    kinds = args.kinds
    gib = 1024**3
    print(
        f"chunked vs naive full-vocab KD loss: T={args.tokens}, V={args.vocab}, float32, fwd+bwd, "
        f"chunk_size={args.chunk_size}, repeats={args.repeats}; "
        f"[T,V] float32 = {args.tokens * args.vocab * 4 / gib:.2f} GiB"
    )
    results = {
        "config": {
            "tokens": args.tokens,
            "vocab": args.vocab,
            "chunk_size": args.chunk_size,
            "repeats": args.repeats,
            "seed": args.seed,
            "dtype": "float32",
            "jsd_beta": args.beta,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_average_start": os.getloadavg()[0],
            "date": time.strftime("%Y-%m-%d %H:%M"),
        },
        "targets": TARGETS,
        "kinds": {},
    }
    all_met = True
    for kind in kinds:
        naive = _run_worker(args, "naive", kind)
        chunked = _run_worker(args, "chunked", kind)
        t_naive, t_chunked = statistics.median(naive["times_s"]), statistics.median(chunked["times_s"])
        row = {
            "naive_peak_gib": naive["peak_delta_bytes"] / gib,
            "chunked_peak_gib": chunked["peak_delta_bytes"] / gib,
            "memory_ratio": chunked["peak_delta_bytes"] / max(naive["peak_delta_bytes"], 1),
            "naive_time_s": t_naive,
            "chunked_time_s": t_chunked,
            "time_ratio": t_chunked / t_naive,
            "max_grad_diff": naive.get("max_grad_diff"),
            "max_loss_diff": naive.get("max_loss_diff"),
            "mean_loss": naive.get("mean_loss"),
            "naive_grad_err_vs_float64": naive.get("naive_grad_err_vs_float64"),
            "chunked_grad_err_vs_float64": naive.get("chunked_grad_err_vs_float64"),
            "naive_loss_err_vs_float64": naive.get("naive_loss_err_vs_float64"),
            "chunked_loss_err_vs_float64": naive.get("chunked_loss_err_vs_float64"),
            "inputs_baseline_rss_gib": naive["baseline_rss_bytes"] / gib,
            "raw": {"naive": naive, "chunked": chunked},
        }
        met = {
            "memory_ratio": row["memory_ratio"] <= TARGETS["memory_ratio"],
            "time_ratio": row["time_ratio"] <= TARGETS["time_ratio"],
        }
        if row["max_grad_diff"] is not None:
            met["max_grad_diff"] = row["max_grad_diff"] <= TARGETS["max_grad_diff"]
        row["targets_met"] = met
        all_met &= all(met.values())
        results["kinds"][kind] = row
        grad = "n/a" if row["max_grad_diff"] is None else f"{row['max_grad_diff']:.2e}"
        print(
            f"{kind:>10}: peak above inputs naive {row['naive_peak_gib']:.2f} GiB, chunked "
            f"{row['chunked_peak_gib']:.2f} GiB (ratio {row['memory_ratio']:.3f}, target <= 0.25); time naive "
            f"{t_naive:.2f} s, chunked {t_chunked:.2f} s (ratio {row['time_ratio']:.2f}, target <= 1.0); "
            f"max |grad diff| {grad} (target <= 1e-5; vs float64 on {args.reference_rows} rows: naive "
            f"{row['naive_grad_err_vs_float64'] or float('nan'):.1e}, chunked "
            f"{row['chunked_grad_err_vs_float64'] or float('nan'):.1e}); "
            f"{'all targets met' if all(met.values()) else 'MISSED: ' + ', '.join(k for k, v in met.items() if not v)}"
        )
    results["config"]["load_average_end"] = os.getloadavg()[0]
    results["all_targets_met"] = all_met
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, json.dumps(results, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
