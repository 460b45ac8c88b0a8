"""``python -m verl_frontier.slm_compress {prune,quantize,measure}``: one compression stage on an HF checkpoint."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verl_frontier.slm_compress", description=__doc__)
    sub = parser.add_subparsers(dest="stage", required=True)

    p = sub.add_parser("prune", help="structured pruning of MLP channels / attention KV groups")
    p.add_argument("--src", required=True, help="HF checkpoint to prune")
    p.add_argument("--dst", required=True, help="output HF checkpoint")
    p.add_argument("--mlp-sparsity", type=float, default=0.5, help="fraction of MLP channels removed, in [0, 1)")
    p.add_argument("--attn-sparsity", type=float, default=0.0, help="fraction of KV groups removed, in [0, 1)")
    p.add_argument("--importance", default="activation", choices=["activation", "weight"])
    p.add_argument("--calib", help="verl parquet whose prompts (+ reference answers) calibrate 'activation'")
    p.add_argument("--calib-n", type=int, default=256)

    q = sub.add_parser("quantize", help="weight-only quantization with torchao")
    q.add_argument("--src", required=True)
    q.add_argument("--dst", required=True)
    q.add_argument("--scheme", default="int8", help="int8 (CPU) or int4 (CUDA/XPU)")
    q.add_argument("--group-size", type=int, default=32, help="int4 group size")
    q.add_argument("--device", default="cpu")

    m = sub.add_parser("measure", help="parameters, on-disk size, CPU latency and greedy accuracy")
    m.add_argument("path")
    m.add_argument("--data", required=True, help="verl parquet (held-out)")
    m.add_argument("--limit", type=int, default=None)

    args = parser.parse_args(argv)
    try:
        if args.stage == "prune":
            from .prune import PruneConfigError, PruneSpec, prune_checkpoint

            spec = PruneSpec(args.mlp_sparsity, args.attn_sparsity, args.importance)
            spec.validate()
            texts = None
            if args.importance == "activation":
                if not args.calib:
                    raise PruneConfigError("--importance activation needs --calib PARQUET (or --importance weight)")
                from transformers import AutoTokenizer

                from .measure import calibration_texts

                texts = calibration_texts(args.calib, AutoTokenizer.from_pretrained(args.src), args.calib_n)
            info = prune_checkpoint(args.src, args.dst, spec, texts)
            info = {k: v for k, v in info.items() if not k.endswith("_keep")}
            print(json.dumps(info))
        elif args.stage == "quantize":
            from .quantize import quantize_checkpoint

            print(quantize_checkpoint(args.src, args.dst, args.scheme, args.group_size, args.device))
        else:
            from .measure import measure_checkpoint

            print(json.dumps(measure_checkpoint(args.path, args.data, limit=args.limit)))
    except ValueError as exc:  # PruneConfigError / QuantizeConfigError: a bad setting, named in the message
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
