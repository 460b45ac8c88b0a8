"""The tiny world: a self-built tokenizer, arithmetic task data and tiny Qwen2 teacher/student.

>>> from verl_frontier.tinyworld import build, world_dir
>>> manifest = build(size="small")          # cached after the first call
>>> world_dir("small")                       # .world/small-seed0 (or $FRONTIER_WORLD_DIR)
"""

from .paths import world_dir
from .reward import compute_score


def build(*args, **kwargs):
    from .builder import build as _build

    return _build(*args, **kwargs)


__all__ = ["build", "compute_score", "world_dir"]
