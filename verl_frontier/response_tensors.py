"""Response-aligned tensors of an actor micro-batch, whichever trainer sent it (verl 0.9.1).

The v1 trainer's micro-batches carry nested (jagged) tensors, the legacy trainer's padded ones; losses that
combine several per-token tensors need them all as padded ``(bs, width)``. Used by the Paced, Essence and
OPSDC losses."""

from __future__ import annotations

import torch


def response_padded(tensor: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """``(bs, width)``: a nested tensor padded with zeros, then right-padded with zeros or cut to ``width``
    (``None`` keeps the padded width)."""
    tensor = tensor.to_padded_tensor(0) if tensor.is_nested else tensor
    if width is None:
        return tensor
    if tensor.shape[1] < width:
        tensor = torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]))
    return tensor[:, :width]
