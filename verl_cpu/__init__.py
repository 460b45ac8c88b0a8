"""verl_cpu: run verl 0.9.1's real trainer on a machine without a GPU.

Selected by ``VERL_PLATFORM=cpu`` (set for you by the ``+platform=cpu`` Hydra config group). Provides a
verl platform ``cpu`` (gloo), FSDP engine registration for device ``cpu``, an HF-``generate`` rollout and
teacher server (``actor_rollout_ref.rollout.name=hf``) and the few version-guarded patches verl 0.9.1 needs.
"""

import os

PLATFORM_NAME = "cpu"
ROLLOUT_NAME = "hf"
SUPPORTED_VERL_VERSIONS = ("0.9.1",)
#: attribute that marks a verl function wrapped by verl_cpu (``verl_frontier_hooks.wrap_once``)
PATCH_MARKER = "_verl_cpu"


def cpu_selected() -> bool:
    """True when this process runs verl on the CPU platform (``VERL_PLATFORM=cpu``)."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME
