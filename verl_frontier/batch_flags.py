"""Set non-tensor flags on an ``update_actor`` batch, whichever trainer sent it (verl 0.9.1).

The legacy trainer sends a TensorDict; the v1 trainer a TransferQueue ``BatchMeta`` whose ``extra_info``
becomes the TensorDict's non-tensor fields inside the worker (verl's ``tqbridge``). Used by the OPSDC and
Essence worker hooks to steer the FSDP engine (``distillation_use_topk`` / ``distillation_only``)."""

from __future__ import annotations


def assign_batch_flags(data, owner: str, **flags) -> None:
    from tensordict import TensorDict

    if isinstance(data, TensorDict):
        from verl.utils import tensordict_utils as tu

        tu.assign_non_tensor(data, **flags)
    elif hasattr(data, "extra_info"):  # TransferQueue BatchMeta / KVBatchMeta
        data.extra_info = {**(data.extra_info or {}), **flags}
    else:
        raise TypeError(f"{owner}: unsupported update_actor batch type {type(data).__name__}")
