"""Weight-only quantization of an HF checkpoint with torchao, saved as a loadable HF checkpoint.

We do not write kernels: ``transformers``' ``TorchAoConfig`` applies torchao's ``quantize_`` to every
``nn.Linear`` of the decoder layers while loading, ``save_pretrained`` serialises torchao's tensor subclasses into
``model.safetensors`` (with the ``quantization_config`` in ``config.json``), and ``AutoModelForCausalLM
.from_pretrained(dst)`` loads the quantized model back (torchao must be installed: ``pip install
'verl-frontier[compress]'``). Embeddings and ``lm_head`` stay in float (transformers' default for torchao).

Schemes:

- ``int8``: ``Int8WeightOnlyConfig`` - symmetric per-output-channel int8 weights, float activations; runs on CPU.
- ``int4``: ``Int4WeightOnlyConfig(group_size)`` - packed int4 weights with per-group scales. torchao >= 0.15
  ships its packed int4 kernels for CUDA (and XPU) only, so on CPU this raises a clear error (torchao's
  CPU-runnable ``IntxWeightOnlyConfig(int4)`` stores int4 values unpacked in int8: no size gain over int8).
"""

from __future__ import annotations

from pathlib import Path

import torch

SCHEMES = ("int8", "int4")


class QuantizeConfigError(ValueError):
    """A bad quantization setting; the message names the setting and the value."""


def _require_torchao():
    try:
        import torchao  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise QuantizeConfigError(
            "weight-only quantization needs torchao: pip install 'verl-frontier[compress]' (or pip install torchao)"
        ) from exc


def torchao_config(scheme: str, group_size: int = 32, device: str = "cpu"):
    """The torchao config object for ``scheme`` (validated)."""
    if scheme not in SCHEMES:
        raise QuantizeConfigError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    _require_torchao()
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig

    if scheme == "int8":
        return Int8WeightOnlyConfig()
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size not in (32, 64, 128, 256):
        raise QuantizeConfigError(f"group_size must be one of 32, 64, 128, 256 for int4, got {group_size!r}")
    if not str(device).startswith(("cuda", "xpu")):
        raise QuantizeConfigError(
            f"scheme='int4' needs a CUDA/XPU device: torchao's packed int4 weight-only kernels do not run on "
            f"{device!r}; use scheme='int8' on CPU"
        )
    return Int4WeightOnlyConfig(group_size=group_size)


def quantize_checkpoint(
    src: str | Path, dst: str | Path, scheme: str = "int8", group_size: int = 32, device: str = "cpu"
) -> Path:
    """Quantize the HF checkpoint ``src`` (weights only) and save it, with its tokenizer, to ``dst``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, TorchAoConfig

    from .prune import copy_tokenizer_files

    cfg = torchao_config(scheme, group_size, device)
    dtype = torch.bfloat16 if scheme == "int4" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        src, dtype=dtype, device_map=device, quantization_config=TorchAoConfig(cfg)
    )
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    copy_tokenizer_files(src, dst)
    return dst


def checkpoint_bytes(path: str | Path) -> int:
    """On-disk size of the weight files (``*.safetensors`` / ``*.bin``) of an HF checkpoint directory."""
    path = Path(path)
    files = [f for f in path.iterdir() if f.is_file() and f.suffix in (".safetensors", ".bin")]
    if not files:
        raise FileNotFoundError(f"no weight files (*.safetensors, *.bin) in {path}")
    return sum(f.stat().st_size for f in files)
