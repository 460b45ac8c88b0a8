"""Import hooks shared by the two packages of this distribution: ``verl_cpu`` and ``verl_frontier``.

Both adjust verl modules from their ``verl.plugins`` entry points, but importing those modules there would
add seconds of start-up to every Ray worker. ``when_imported`` defers the work until the module is actually
imported (or runs it at once if it already is); ``wrap_once`` replaces a function idempotently.

This is a top-level package of its own, with no dependency on either package (standard library only), so
that ``verl_cpu`` stays usable without ``verl_frontier`` and the method glue in ``verl_frontier`` does not
import the CPU port. The ``verl_frontier_`` prefix keeps the name inside this distribution's namespace.
"""

import functools
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable

_callbacks: dict[str, list[Callable]] = {}


class _PostImportLoader(importlib.abc.Loader):
    def __init__(self, loader, name):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        for callback in _callbacks.pop(self._name, []):
            callback(module)

    def __getattr__(self, item):  # get_code, get_source, is_package, ...
        return getattr(self._loader, item)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _callbacks:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                spec.loader = _PostImportLoader(spec.loader, fullname)
                return spec
        return None


_finder = _PostImportFinder()


def when_imported(module_name: str, callback: Callable) -> None:
    """Call ``callback(module)`` once ``module_name`` has been executed (now, if already imported)."""
    module = sys.modules.get(module_name)
    if module is not None and getattr(module, "__spec__", None) is not None and not _is_initialising(module):
        callback(module)
        return
    _callbacks.setdefault(module_name, []).append(callback)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def _is_initialising(module) -> bool:
    spec = getattr(module, "__spec__", None)
    return bool(spec is not None and getattr(spec, "_initializing", False))


def wrap_once(owner, name: str, make_wrapper: Callable, *, marker: str):
    """Replace ``owner.<name>`` with ``make_wrapper(original)`` unless it already carries ``marker``.

    The wrapper keeps the original's metadata (``functools.wraps``) and is marked with the attribute ``marker``
    so that applying the same patch again (a driver that selects the CPU platform twice, a module re-imported)
    is a no-op. Each patching package (or method) passes its own marker. Returns the function now installed.
    """
    original = getattr(owner, name)
    if getattr(original, marker, False):
        return original
    wrapper = functools.wraps(original)(make_wrapper(original))
    setattr(wrapper, marker, True)
    setattr(owner, name, wrapper)
    return wrapper


#: module names of verl's command-line entry points (``python -m verl.trainer.main_ppo`` runs as ``__main__``)
VERL_ENTRY_MODULES = frozenset({"__main__", "verl.trainer.main_ppo"})
#: set on an exception whose lines were already printed, so that they are not printed twice
REPORTED = "_frontier_reported"


def exit_for_config_error(exc: BaseException, caller_globals: dict, prefix: str = "config error: ") -> None:
    """Turn a config error raised under verl's own entry point into its lines on stderr and exit status 2.

    ``exc`` is a config error with ``errors`` (one line each); ``caller_globals`` are the globals of the frame
    that called the wrapped verl function. When that caller is verl's ``main_ppo`` (the user ran
    ``python -m verl.trainer.main_ppo``), the lines are printed (unless already printed) and ``SystemExit(2)``
    is raised: Hydra catches ``Exception`` and would print a traceback and exit 1, but lets ``SystemExit`` pass.
    Any other caller (a test, ``frontier validate``) gets the exception itself: nothing happens here.
    """
    errors = getattr(exc, "errors", None)
    if not errors or caller_globals.get("__name__") not in VERL_ENTRY_MODULES:
        return
    if not getattr(exc, REPORTED, False):
        print("\n".join(prefix + line for line in errors), file=sys.stderr, flush=True)
    raise SystemExit(2) from None
