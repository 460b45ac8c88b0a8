"""``python -m verl_frontier.slm_compress {prune,quantize,measure}``: one compression stage on an HF checkpoint.

Every argument is checked before a model is loaded; an output checkpoint is written next to ``--dst`` and
moved there only when complete.
"""

from __future__ import annotations

import json
import re
import sys

from verl_frontier.arguments import (
    FRACTION,
    POSITIVE_INT,
    ArgumentParser,
    Kind,
    atomic_dir,
    check_parquet,
    existing_dir,
    output_dir,
)


def _hf_dir(value):
    from verl_frontier.evaluation.checkpoint import is_hf_dir

    path = existing_dir.parse(value)
    if not is_hf_dir(path):
        raise ValueError(f"{path} is not an HF checkpoint (config.json + weights)")
    return path


def _device(value) -> str:
    if not re.fullmatch(r"(cpu|cuda|xpu)(:\d+)?", str(value)):
        raise ValueError(f"must be cpu, cuda, xpu or cuda:N / xpu:N, got {value!r}")
    return str(value)


HF_DIR = Kind("HF checkpoint", _hf_dir)
DEVICE = Kind("device", _device)
PROMPTS = Kind("parquet", lambda v: check_parquet(v, ("prompt",)))
HELD_OUT = Kind("parquet", lambda v: check_parquet(v, ("prompt", "reward_model")))


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m verl_frontier.slm_compress", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)

    p = sub.add_parser("prune", help="structured pruning of MLP channels / attention KV groups")
    p.add_argument("--src", required=True, type=HF_DIR, help="HF checkpoint to prune")
    p.add_argument("--dst", required=True, type=output_dir, help="output HF checkpoint")
    p.add_argument("--mlp-sparsity", type=FRACTION, default=0.5, help="fraction of MLP channels removed, in [0, 1)")
    p.add_argument("--attn-sparsity", type=FRACTION, default=0.0, help="fraction of KV groups removed, in [0, 1)")
    p.add_argument("--importance", default="activation", choices=["activation", "weight"])
    p.add_argument(
        "--calib", type=PROMPTS, help="verl parquet whose prompts (+ reference answers) calibrate 'activation'"
    )
    p.add_argument("--calib-n", type=POSITIVE_INT, default=256)

    q = sub.add_parser("quantize", help="weight-only quantization with torchao")
    q.add_argument("--src", required=True, type=HF_DIR)
    q.add_argument("--dst", required=True, type=output_dir)
    q.add_argument("--scheme", default="int8", choices=["int8", "int4"], help="int8 (CPU) or int4 (CUDA/XPU)")
    q.add_argument("--group-size", type=POSITIVE_INT, default=32, choices=(32, 64, 128, 256), help="int4 group size")
    q.add_argument("--device", type=DEVICE, default="cpu")

    m = sub.add_parser("measure", help="parameters, on-disk size, CPU latency and greedy accuracy")
    m.add_argument("path", type=HF_DIR)
    m.add_argument("--data", required=True, type=HELD_OUT, help="verl parquet (held-out)")
    m.add_argument("--limit", type=POSITIVE_INT, default=None)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a bad argument (one line on stderr) or --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if getattr(args, "dst", None) is not None and args.dst.resolve() == args.src.resolve():
            raise ValueError(f"--dst: must differ from --src ({args.src})")
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
            with atomic_dir(args.dst) as tmp:
                info = prune_checkpoint(args.src, tmp, spec, texts)
            info = {k: v for k, v in info.items() if not k.endswith("_keep")}
            print(json.dumps(info))
        elif args.stage == "quantize":
            from .quantize import quantize_checkpoint, torchao_config

            torchao_config(args.scheme, args.group_size, args.device)  # a bad combination fails before loading
            with atomic_dir(args.dst) as tmp:
                quantize_checkpoint(args.src, tmp, args.scheme, args.group_size, args.device)
            print(args.dst)
        else:
            from .measure import measure_checkpoint

            print(json.dumps(measure_checkpoint(args.path, args.data, limit=args.limit)))
    except ValueError as exc:  # PruneConfigError / QuantizeConfigError: a bad setting, named in the message
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
