"""Import boundaries of the distribution's three top-level packages, and of the pure math modules.

* ``verl_frontier_hooks``: the import hooks both packages use; standard library only.
* ``verl_cpu``: the CPU port of verl; usable without ``verl_frontier`` (never imports it).
* ``verl_frontier``: the methods; imports ``verl_cpu`` only where the CPU platform is its business
  (:data:`VERL_CPU_USERS`), never in method glue.
* The math modules (:data:`PURE_MODULES`) compute on tensors and never import verl, so they are testable and
  reusable without it.

Each runtime check runs in a fresh interpreter: ``sys.modules`` of the test process already holds everything.
"""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: verl_frontier modules that may import verl_cpu, and why it is the CPU port's business there
VERL_CPU_USERS = {
    # `frontier check` verifies the CPU plugin's verl registrations next to the methods' (by module name)
    "verl_frontier/registration.py": {"verl_cpu.plugin"},
    # with trainer.device=cpu, `frontier validate` and the driver-side checks include the CPU platform's settings
    "verl_frontier/validation.py": {"verl_cpu.validation"},
}

#: verl_frontier modules holding math only (tensors in, tensors out); none may import verl
PURE_MODULES = (
    "verl_frontier.ace.advantage",
    "verl_frontier.asgld.optimizers",
    "verl_frontier.asgld.saddle",
    "verl_frontier.essence.config",
    "verl_frontier.essence.losses",
    "verl_frontier.essence.segments",
    "verl_frontier.evaluation.paired",
    "verl_frontier.evaluation.passk",
    "verl_frontier.gkd",
    "verl_frontier.gkd.assign",
    "verl_frontier.gkd.config",
    "verl_frontier.gkd.validation",
    "verl_frontier.kd",
    "verl_frontier.kd.chunked",
    "verl_frontier.kd.kinds",
    "verl_frontier.kd.topk",
    "verl_frontier.opsdc.losses",
    "verl_frontier.opsdc.sync",
    "verl_frontier.opsdc.teacher_inputs",
    "verl_frontier.paced.config",
    "verl_frontier.paced.frontier",
    "verl_frontier.paced.losses",
    "verl_frontier.paced.weights",
    "verl_frontier.tinyworld.reward",
    *(
        f"verl_frontier.orbit.envs.{m.name}"
        for m in pkgutil.iter_modules([str(REPO / "verl_frontier" / "orbit" / "envs")])
    ),
)


def _run(code: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    full_env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_hooks_package_needs_neither_package():
    out = _run(
        """
        import json, sys
        import verl_frontier_hooks
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("verl", "verl_cpu", "verl_frontier"))))
        """
    )
    assert out == []


def test_import_verl_cpu_does_not_import_verl_frontier():
    out = _run(
        """
        import json, sys
        import verl_cpu, verl_cpu.config_hooks, verl_cpu.patches, verl_cpu.validation, verl_cpu.device
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "verl_frontier")))
        """
    )
    assert out == []


def test_verl_cpu_works_without_verl_frontier():
    """With verl_frontier made unimportable, ``import verl`` still loads verl_cpu's plugin (registrations and CPU
    patches) and every verl_cpu module imports."""
    out = _run(
        """
        import importlib, json, sys
        from importlib.abc import MetaPathFinder

        class Block(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "verl_frontier" or name.startswith("verl_frontier."):
                    raise ModuleNotFoundError(f"blocked: {name}", name=name)
                return None

        sys.meta_path.insert(0, Block())
        import verl  # loads the verl.plugins entry points: verl_frontier's fails (blocked), verl_cpu's must not
        import verl_cpu.plugin as plugin
        from verl.plugin.platform.platform_manager import PlatformRegistry
        import verl.utils.distributed as distributed  # a module verl_cpu patches on the CPU platform

        for name in ("config_hooks", "device", "hf_engine", "hf_rollout", "patches", "platform", "validation"):
            importlib.import_module(f"verl_cpu.{name}")
        print(json.dumps({
            "frontier": sorted(m for m in sys.modules if m.split(".")[0] == "verl_frontier"),
            "errors": plugin.PLUGIN_ERRORS,
            "platform": PlatformRegistry.get("cpu") is not None,
            "patched": bool(getattr(distributed.initialize_global_process_group_ray, "_verl_cpu", False)),
        }))
        """,
        env={"VERL_PLATFORM": "cpu"},
    )
    assert out == {"frontier": [], "errors": [], "platform": True, "patched": True}


def _verl_cpu_imports(path: Path) -> set[str]:
    """verl_cpu modules ``path`` imports, by import statement or by module name in a string."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value] if re.fullmatch(r"verl_cpu(\.\w+)*", node.value) else []
        found.update(n for n in names if n == "verl_cpu" or n.startswith("verl_cpu."))
    return found


def test_verl_frontier_imports_verl_cpu_only_where_listed():
    found = {}
    for path in sorted((REPO / "verl_frontier").rglob("*.py")):
        names = _verl_cpu_imports(path)
        if names:
            found[str(path.relative_to(REPO))] = names
    assert found == VERL_CPU_USERS


def test_math_modules_do_not_import_verl():
    out = _run(
        f"""
        import importlib, json, sys
        loaded = {{}}
        for name in {list(PURE_MODULES)!r}:
            importlib.import_module(name)
            verl = sorted(m for m in sys.modules if m == "verl" or m.startswith("verl."))
            if verl:
                loaded[name] = verl[:5]
                break
        print(json.dumps(loaded))
        """
    )
    assert out == {}, f"imports verl (first offender only): {out}"


def test_one_definition_of_the_divergence_kinds():
    from verl_frontier.kd import chunked
    from verl_frontier.kd.kinds import KINDS
    from verl_frontier.opsdc import losses as opsdc_losses
    from verl_frontier.paced.config import DIVERGENCE_CODES

    assert chunked.KINDS is KINDS and opsdc_losses.KINDS is KINDS
    assert DIVERGENCE_CODES == {"forward_kl": 0, "reverse_kl": 1, "jsd": 2} and tuple(DIVERGENCE_CODES) == KINDS
