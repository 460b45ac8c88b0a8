"""Resolve a checkpoint path to a HuggingFace model directory.

Accepted:
* an HF directory (``config.json`` + weights);
* a verl FSDP checkpoint: ``.../global_step_N/actor`` (``fsdp_config.json`` and
  ``model_world_size_W_rank_R.pt`` shards), ``.../global_step_N`` (its ``actor/`` is used), or a
  trainer's checkpoint root holding ``global_step_*`` dirs (the latest, per
  ``latest_checkpointed_iteration.txt`` or the highest N). If verl saved a full HF model under
  ``actor/huggingface`` it is used as is; otherwise the shards are merged with verl's own
  ``verl.model_merger`` (``FSDPModelMerger``) into ``<actor>/../actor_merged_hf`` (cached; re-merged
  when the shards change).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
MERGED_DIR_NAME = "actor_merged_hf"


def is_hf_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / w).is_file() for w in _WEIGHT_FILES)


def is_fsdp_actor_dir(path: Path) -> bool:
    return (path / "fsdp_config.json").is_file() and any(path.glob("model_world_size_*_rank_*.pt"))


def _latest_step_dir(root: Path) -> Path | None:
    marker = root / "latest_checkpointed_iteration.txt"
    if marker.is_file():
        try:
            step = int(marker.read_text().strip())
            cand = root / f"global_step_{step}"
            if cand.is_dir():
                return cand
        except ValueError:
            pass
    steps = []
    for p in root.glob("global_step_*"):
        m = re.fullmatch(r"global_step_(\d+)", p.name)
        if m and p.is_dir():
            steps.append((int(m.group(1)), p))
    return max(steps)[1] if steps else None


def _shard_stamp(actor: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(actor.glob("model_world_size_*_rank_*.pt")) + [actor / "fsdp_config.json"]:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def merge_fsdp_checkpoint(actor_dir: str | Path, target_dir: str | Path | None = None, force: bool = False) -> Path:
    """Merge verl FSDP shards in ``actor_dir`` to an HF dir with verl's ``FSDPModelMerger``."""
    actor = Path(actor_dir)
    target = Path(target_dir) if target_dir is not None else actor.parent / MERGED_DIR_NAME
    stamp_file = target / ".merged_from"
    stamp = _shard_stamp(actor)
    if not force and is_hf_dir(target) and stamp_file.is_file() and stamp_file.read_text() == stamp:
        return target
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    target.mkdir(parents=True, exist_ok=True)
    config = ModelMergerConfig(
        operation="merge",
        backend="fsdp",
        local_dir=str(actor),
        target_dir=str(target),
        hf_model_config_path=str(actor / "huggingface"),
    )
    merger = FSDPModelMerger(config)
    merger.merge_and_save()
    merger.cleanup()
    stamp_file.write_text(stamp)
    return target


def locate_checkpoint(path: str | Path) -> Path:
    """The HF dir or the FSDP actor dir that ``path`` points at, without merging or loading anything; raises
    FileNotFoundError / ValueError (one line) when ``path`` is neither."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if is_hf_dir(p):
        return p
    if not is_fsdp_actor_dir(p):
        if (p / "actor").is_dir():
            p = p / "actor"
        elif p.is_dir():
            step = _latest_step_dir(p)
            if step is not None and (step / "actor").is_dir():
                p = step / "actor"
    if is_fsdp_actor_dir(p):
        return p
    raise ValueError(
        f"{path}: not an HF model dir (config.json + weights) nor a verl FSDP checkpoint "
        "(fsdp_config.json + model_world_size_*_rank_*.pt, possibly under actor/ or global_step_N/)"
    )


def resolve_checkpoint(path: str | Path, merge: bool = True) -> Path:
    """Return an HF model directory for ``path`` (see module docstring)."""
    p = locate_checkpoint(path)
    if is_hf_dir(p):
        return p
    if is_hf_dir(p / "huggingface"):
        return p / "huggingface"
    if not merge:
        raise ValueError(f"{p} holds FSDP shards; merging is disabled")
    return merge_fsdp_checkpoint(p)
