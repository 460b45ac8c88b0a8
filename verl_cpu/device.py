"""A ``torch.cuda``-shaped device module for the CPU, as verl's platform layer expects.

verl calls ``get_torch_device().<fn>()`` for streams, RNG state, memory statistics and cache control; on the
CPU these are no-ops or report host memory. ``current_device()`` returns ``"cpu"`` (not ``0``): verl passes
it straight to ``Tensor.to`` and ``device=``.
"""

import contextlib

import psutil
import torch


def is_available() -> bool:
    return True


def device_count() -> int:
    return 1


def current_device() -> str:
    return "cpu"


def set_device(device=None) -> None:
    return None


def get_device_name(device=None) -> str:
    return "cpu"


def synchronize(device=None) -> None:
    return None


def empty_cache() -> None:
    return None


def ipc_collect() -> None:
    return None


def manual_seed(seed: int) -> None:
    torch.manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    torch.manual_seed(seed)


def get_rng_state(device=None) -> torch.Tensor:
    return torch.get_rng_state()


def set_rng_state(state: torch.Tensor, device=None) -> None:
    torch.set_rng_state(state)


def mem_get_info(device=None) -> tuple[int, int]:
    memory = psutil.virtual_memory()
    return memory.available, memory.total


def _rss() -> int:
    return psutil.Process().memory_info().rss


def memory_allocated(device=None) -> int:
    return _rss()


def memory_reserved(device=None) -> int:
    return _rss()


def max_memory_allocated(device=None) -> int:
    return _rss()


def max_memory_reserved(device=None) -> int:
    return _rss()


def reset_peak_memory_stats(device=None) -> None:
    return None


def set_per_process_memory_fraction(fraction: float, device=None) -> None:
    return None


class Stream:
    """Stand-in for ``torch.cuda.Stream``: CPU work is already ordered."""

    def __init__(self, *args, **kwargs):
        pass

    def synchronize(self) -> None:
        return None

    def wait_stream(self, stream) -> None:
        return None

    def wait_event(self, event) -> None:
        return None

    def record_event(self, event=None):
        return event or Event()


class Event:
    def __init__(self, *args, **kwargs):
        pass

    def record(self, stream=None) -> None:
        return None

    def synchronize(self) -> None:
        return None

    def wait(self, stream=None) -> None:
        return None

    def query(self) -> bool:
        return True


_default_stream = Stream()


def current_stream(device=None) -> Stream:
    return _default_stream


@contextlib.contextmanager
def stream(s=None):
    yield s


class _Memory:
    @staticmethod
    def _set_allocator_settings(settings: str) -> None:
        return None


memory = _Memory()
