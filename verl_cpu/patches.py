"""The few changes verl 0.9.1 still needs to run on the CPU platform.

Each patch names the verl function it changes and why; each is applied lazily (when verl imports the target
module, see ``verl_frontier_hooks``; at once for a module already imported, such as ``warnings``) and only
when the CPU platform is selected. They are pinned to the verl versions we tested: on any other version
``apply_cpu_patches`` refuses with a clear message instead of patching blindly. Patches 1-5 are 1-3 line
upstream fixes; 6 and 7 keep the console readable.
"""

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from verl_cpu import PATCH_MARKER, ROLLOUT_NAME, SUPPORTED_VERL_VERSIONS
from verl_frontier_hooks import when_imported, wrap_once

logger = logging.getLogger(__name__)


class UnsupportedVerlVersion(RuntimeError):
    pass


@dataclass(frozen=True)
class Patch:
    module: str
    target: str
    why: str
    apply: Callable


# 1. verl.utils.distributed.initialize_global_process_group_ray builds the backend string
#    f"cpu:gloo,{device}:{backend}" = "cpu:gloo,cpu:gloo" on CPU; torch rejects it ("Duplicate device type
#    cpu"). On CPU the right backend is plain "cpu:gloo".
def _patch_process_group(module) -> None:
    def make(original):
        def initialize_global_process_group_ray(timeout_second=None, backend=None):
            return original(timeout_second=timeout_second, backend=backend or "cpu:gloo")

        return initialize_global_process_group_ray

    wrap_once(module, "initialize_global_process_group_ray", make, marker=PATCH_MARKER)


# 2. verl.workers.engine.fsdp.transformer_impl builds FSDP2's CPUOffloadPolicy(pin_memory=True) for the
#    reference model; pinning host memory needs an accelerator ("Cannot access accelerator device"). The
#    policy class is imported from verl.utils.fsdp_utils, so we swap it there for one that never pins.
def _patch_offload_policy(module) -> None:
    base = module.CPUOffloadPolicy
    if base is None or getattr(base, "_verl_cpu_unpinned", False):
        return

    class UnpinnedCPUOffloadPolicy(base):
        _verl_cpu_unpinned = True

        def __init__(self, pin_memory: bool = False, *args, **kwargs):
            super().__init__(*args, pin_memory=False, **kwargs)

    module.CPUOffloadPolicy = UnpinnedCPUOffloadPolicy


# 3. verl registers FSDPEngineWithLMHead / FSDPEngineWithValueHead for devices cuda and npu only
#    (EngineRegistry: "No engine registered for device='cpu'"). FSDP2 over gloo works on CPU.
def _register_fsdp_engines(module) -> None:
    from verl.workers.engine.base import EngineRegistry

    for model_type, engine_cls in (
        ("language_model", module.FSDPEngineWithLMHead),
        ("value_model", module.FSDPEngineWithValueHead),
    ):
        registry = EngineRegistry._engines.setdefault(model_type, {})
        if all("cpu" in registry.get(backend, {}) for backend in ("fsdp", "fsdp2")):
            continue
        EngineRegistry.register(model_type=model_type, backend=["fsdp", "fsdp2"], device="cpu")(engine_cls)


# 4. verl.workers.config.distillation.DistillationTeacherModelConfig._validate_topk_logprobs only accepts
#    teacher inference engines vllm|sglang for top-k distillation; our `hf` server returns top-k prompt
#    log-probs per request (like SGLang), so there is no engine-boot cap to align.
def _patch_teacher_topk_validation(module) -> None:
    def make(original):
        def _validate_topk_logprobs(self, use_topk, topk):
            if use_topk and self.inference.name == ROLLOUT_NAME:
                if topk is None:
                    raise ValueError("topk must be specified when use_topk is True.")
                return None
            return original(self, use_topk, topk)

        return _validate_topk_logprobs

    wrap_once(module.DistillationTeacherModelConfig, "_validate_topk_logprobs", make, marker=PATCH_MARKER)


# 5. verl.trainer.ppo.v1.replay_buffer.ReplayBuffer polls TransferQueue every 2.0 s (a constructor default
#    that no config key reaches). A tiny CPU step takes well under a second, so the v1 trainer spent ~2 s
#    per step waiting on the poll. Poll every VERL_CPU_POLL_INTERVAL seconds (default 0.05) instead.
def _patch_replay_buffer_poll(module) -> None:
    interval = float(os.environ.get("VERL_CPU_POLL_INTERVAL", "0.05"))

    def make(original):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("poll_interval", interval)
            original(self, *args, **kwargs)

        return __init__

    wrap_once(module.ReplayBuffer, "__init__", make, marker=PATCH_MARKER)


# 6. verl.workers.engine warns at import, in every worker, that each optional engine (megatron, mindspeed,
#    torchtitan, veomni, automodel) is not installed. The CPU platform runs FSDP2 only, so the warnings say
#    nothing a user can act on. Only those warnings are ignored (the `warnings` filter list is changed at once,
#    before verl imports its engines); any other warning still shows.
OPTIONAL_ENGINES = ("megatron", "mindspeed", "torchtitan", "veomni", "automodel")


def _ignore_optional_engine_warnings(module) -> None:
    module.filterwarnings(
        "ignore",
        message=rf"({'|'.join(OPTIONAL_ENGINES)}) engine is not available",
        category=UserWarning,
        module=r"verl\.workers\.engine$",
    )


# 7. verl.utils.tracking.Tracking prints every step's full metric dict (~100 values) on the console when
#    trainer.logger has `console`. With the `file` logger as well (VERL_FILE_LOGGER_PATH), every value is
#    already in that JSONL file, so the console gets one short line per step: the step, the file, a few
#    headline values. VERL_CPU_CONSOLE_METRICS=full keeps verl's full lines.
CONSOLE_HEADLINE_KEYS = ("actor/distillation/loss", "actor/pg_loss", "critic/score/mean", "timing_s/step")


def headline_metrics(data: dict) -> dict:
    """The values a brief console line shows: greedy validation accuracy (``val-core/.../acc/mean@1``) and
    ``CONSOLE_HEADLINE_KEYS``, those present, in that order."""
    keys = [k for k in data if k.startswith("val-core/") and k.endswith("/acc/mean@1")]
    keys += [k for k in CONSOLE_HEADLINE_KEYS if k in data]
    return {k: data[k] for k in keys if isinstance(data[k], (int, float))}


class BriefConsoleLogger:
    """verl console backend: ``step:N - <count> metrics in <file> - <headline values>``."""

    def __init__(self, file_path: str):
        self.file_path = file_path

    def log(self, data, step):
        parts = [f"step:{step}", f"{len(data)} metrics in {self.file_path}"]
        parts += [f"{k}:{v:.4g}" for k, v in headline_metrics(data).items()]
        print(" - ".join(parts), flush=True)

    def flush(self):
        pass


def _brief_console_metrics(module) -> None:
    def make(original):
        def __init__(self, *args, **kwargs):
            original(self, *args, **kwargs)
            loggers = getattr(self, "logger", {})
            if os.environ.get("VERL_CPU_CONSOLE_METRICS", "brief") == "full":
                return
            if "console" in loggers and "file" in loggers:
                path = os.path.abspath(getattr(loggers["file"], "filepath", "") or "the file logger")
                self.console_logger = loggers["console"] = BriefConsoleLogger(path)

        return __init__

    wrap_once(module.Tracking, "__init__", make, marker=PATCH_MARKER)


CPU_PATCHES = (
    Patch(
        "verl.utils.distributed",
        "initialize_global_process_group_ray",
        "gloo-only backend string",
        _patch_process_group,
    ),
    Patch(
        "verl.utils.fsdp_utils", "CPUOffloadPolicy", "no pinned memory without an accelerator", _patch_offload_policy
    ),
    Patch(
        "verl.workers.engine.fsdp.transformer_impl",
        "EngineRegistry",
        "FSDP engines for device cpu",
        _register_fsdp_engines,
    ),
    Patch(
        "verl.workers.config.distillation",
        "DistillationTeacherModelConfig._validate_topk_logprobs",
        "top-k teacher log-probs from the hf server",
        _patch_teacher_topk_validation,
    ),
    Patch(
        "verl.trainer.ppo.v1.replay_buffer",
        "ReplayBuffer.__init__",
        "poll TransferQueue every 50 ms, not 2 s",
        _patch_replay_buffer_poll,
    ),
    Patch(
        "warnings",  # already imported: the filter is in place before verl.workers.engine is imported
        "verl.workers.engine: '<engine> engine is not available' UserWarnings",
        "no warning per worker about optional engines the CPU platform never uses",
        _ignore_optional_engine_warnings,
    ),
    Patch(
        "verl.utils.tracking",
        "Tracking.__init__",
        "one short console line per step when the file logger has every metric",
        _brief_console_metrics,
    ),
)


def check_verl_version() -> str:
    import verl

    version = getattr(verl, "__version__", "unknown")
    if version not in SUPPORTED_VERL_VERSIONS:
        raise UnsupportedVerlVersion(
            f"verl_cpu was tested with verl {', '.join(SUPPORTED_VERL_VERSIONS)} but verl {version} is installed; "
            "its CPU patches are not applied blindly. Install verl==0.9.1 or update verl_cpu/patches.py."
        )
    return version


_applied = False


def apply_cpu_patches() -> None:
    """Arrange for every CPU patch to be applied as soon as its verl module is imported (once per process)."""
    global _applied
    check_verl_version()
    if _applied:
        return
    for patch in CPU_PATCHES:
        when_imported(patch.module, patch.apply)
    _applied = True
