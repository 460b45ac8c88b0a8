"""The ``frontier`` command line.

Subcommands: ``check``, ``recipes``, ``new-recipe``, ``validate``; plus ``world`` and ``eval`` when
``verl_frontier.tinyworld.cli`` / ``verl_frontier.evaluation.cli`` are installed (loaded lazily).

Heavy modules (verl, torch, hydra) are imported inside the commands so ``frontier --help`` is fast.
User errors print one line to stderr and exit with code 2 (set ``FRONTIER_DEBUG=1`` for tracebacks).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import platform
import sys
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from verl_frontier.arguments import EXIT_USAGE, OneLineErrors

# name -> (module, attribute, help): subcommands of optional modules; loaded only when present.
LAZY_SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "world": ("verl_frontier.tinyworld.cli", "world_app", "Tiny world: build and inspect the tiny test world."),
    "eval": ("verl_frontier.evaluation.cli", "eval_command", "Evaluate checkpoints."),
    "launch": ("verl_frontier.launch.cli", "launch_command", "Launch a recipe: this node, SLURM or a Ray cluster."),
}


def _module_available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _load_lazy(name: str) -> click.Command | None:
    module_name, attr, help_text = LAZY_SUBCOMMANDS[name]
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # noqa: BLE001 - another agent's module; a broken one must not break the CLI
        if os.environ.get("FRONTIER_DEBUG"):
            raise
        message = f"`frontier {name}` is unavailable: cannot load {module_name}.{attr}: {type(exc).__name__}: {exc}"

        @click.command(name=name, help=help_text + " (unavailable)", context_settings={"ignore_unknown_options": True})
        @click.argument("args", nargs=-1, type=click.UNPROCESSED)
        def _unavailable(args):
            _fail(message)

        return _unavailable
    if isinstance(obj, click.Command):
        command = obj
    elif isinstance(obj, typer.Typer):
        command = typer.main.get_command(obj)
    elif callable(obj):
        sub = typer.Typer(add_completion=False)
        sub.command(name=name, help=obj.__doc__ or help_text)(obj)
        command = typer.main.get_command(sub)
    else:
        return None
    command.name = name
    if not command.help:
        command.help = help_text
    return command


class _FrontierGroup(OneLineErrors, TyperGroup):
    """Adds the lazily loaded subcommands (``world``, ``eval``) when their modules exist; usage errors are one
    line (``verl_frontier.arguments.OneLineErrors``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(super().list_commands(ctx))
        for name, (module, _, _) in LAZY_SUBCOMMANDS.items():
            if name not in names and _module_available(module):
                names.append(name)
        return names

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in LAZY_SUBCOMMANDS and _module_available(LAZY_SUBCOMMANDS[cmd_name][0]):
            command = _load_lazy(cmd_name)
        return command


app = typer.Typer(
    name="frontier",
    cls=_FrontierGroup,
    help="verl-frontier: recipes and checks for new RL/distillation methods on verl 0.9.1.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def _fail(message: str, code: int = EXIT_USAGE):
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    from verl_frontier.recipes import RecipeError
    from verl_frontier.registration import RegistrationError
    from verl_frontier.validation import FrontierConfigError

    return (CliError, RecipeError, RegistrationError, FrontierConfigError)


def _handles_errors(func):
    """Turn exceptions raised by a command into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException, click.exceptions.ClickException):
            raise
        except Exception as exc:  # noqa: BLE001
            if os.environ.get("FRONTIER_DEBUG"):
                raise
            if isinstance(exc, _user_errors()):
                _fail(str(exc))
            _fail(f"{type(exc).__name__}: {exc}")

    return wrapper


def _quiet_imports() -> None:
    """Keep verl's import-time chatter (warnings about optional engines, platform fallback) off the terminal."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("VERL_LOGGING_LEVEL", "ERROR")
    for name in ("verl", "verl.plugin.platform.platform_manager", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)


# ---------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment_report() -> dict:
    """Versions, hardware and registered names (imports torch and verl)."""
    import psutil

    report: dict = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "versions": {
            name: _dist_version(name)
            for name in ("verl-frontier", "verl", "torch", "transformers", "ray", "vllm", "hydra-core")
        },
    }
    try:
        import torch

        report["cuda_available"] = bool(torch.cuda.is_available())
        report["cuda_devices"] = torch.cuda.device_count() if report["cuda_available"] else 0
    except Exception as exc:  # noqa: BLE001
        report["cuda_available"] = f"unknown ({type(exc).__name__}: {exc})"
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    report["cpu_count"] = os.cpu_count()
    report["cpus_usable"] = affinity
    mem = psutil.virtual_memory()
    report["memory_total_gib"] = round(mem.total / 2**30, 1)
    report["memory_available_gib"] = round(mem.available / 2**30, 1)

    from verl_frontier.registration import KINDS, registered_names

    names: dict = {}
    for kind in KINDS:
        try:
            names[kind] = registered_names(kind)
        except Exception as exc:  # noqa: BLE001
            names[kind] = f"unavailable ({type(exc).__name__}: {' '.join(str(exc).split())})"
    report["registered"] = names
    return report


def _print_report(report: dict) -> None:
    typer.echo(f"python        {report['python']} ({report['executable']})")
    typer.echo(f"platform      {report['platform']}")
    for name, ver in report["versions"].items():
        typer.echo(f"{name:<13} {ver or '-'}")
    typer.echo(f"cuda          {report['cuda_available']} ({report.get('cuda_devices', 0)} devices)")
    typer.echo(f"cpus          {report['cpu_count']} (usable: {report['cpus_usable']})")
    typer.echo(f"memory        {report['memory_total_gib']} GiB total, {report['memory_available_gib']} GiB available")
    typer.echo("registered:")
    for kind, names in report["registered"].items():
        shown = ", ".join(names) if isinstance(names, list) else names
        typer.echo(f"  {kind:<18} {shown}")


@app.command()
@_handles_errors
def check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only check registrations; no report.")] = False,
):
    """Assert every plugin registration is in place, then print an environment report and the table of verl
    functions verl-frontier wraps."""
    _quiet_imports()
    from dataclasses import asdict

    from verl_frontier import verl_patches
    from verl_frontier.registration import RegistrationError, assert_registered

    error = None
    found: dict = {}
    try:
        found = assert_registered()
    except RegistrationError as exc:
        error = exc
    if not quiet:
        report = environment_report()
        report["expected"] = {m: [list(p) for p in pairs] for m, pairs in found.items()}
        report["ok"] = error is None
        report["verl_patches"] = [{**asdict(p), "target": p.target} for p in verl_patches.PATCHES]
        if as_json:
            typer.echo(json.dumps(report, indent=2, default=str))
        else:
            _print_report(report)
            typer.echo(verl_patches.format_table())
    if error is not None:
        _fail(str(error))
    if not quiet and not as_json:
        total = sum(len(v) for v in found.values())
        typer.echo(f"OK: {total} expected registrations present ({', '.join(found) or 'no plugin modules'})")


# ---------------------------------------------------------------------------
# recipes / new-recipe
# ---------------------------------------------------------------------------


@app.command("recipes")
@_handles_errors
def recipes_cmd():
    """List the recipes with a one-line description each."""
    from verl_frontier.recipes import list_recipes, recipes_dir

    items = list_recipes()
    if not items:
        typer.echo(f"no recipes in {recipes_dir()}")
        return
    width = max(len(r.name) for r in items)
    for recipe in items:
        typer.echo(f"{recipe.name:<{width}}  {recipe.description}".rstrip())


@app.command("new-recipe")
@_handles_errors
def new_recipe_cmd(
    name: Annotated[str, typer.Argument(help="Name of the new recipe folder.")],
    source: Annotated[str, typer.Option("--from", help="Existing recipe to copy.")],
):
    """Copy recipe SOURCE to NAME, renaming config files, experiment and config names."""
    from verl_frontier.recipes import new_recipe

    dest = new_recipe(name, source)
    typer.echo(f"created {dest} (from {source}); edit {dest / (name + '.yaml')}")


# ---------------------------------------------------------------------------
# validate
# ---------------------------------------------------------------------------


def _collect(problems: list[str], func):
    """Run ``func``; a user error's lines (``errors``, or its message) go to ``problems`` (each once) and None
    is returned."""
    try:
        return func()
    except _user_errors() as exc:
        for line in getattr(exc, "errors", None) or [str(exc)]:
            if line not in problems:
                problems.append(line)
        return None


def _run_verl_validate_config(config, problems: list[str]) -> str:
    """verl's ``auto_set_device`` (the CPU platform's checks run there) and ``validate_config``, as verl's driver
    calls them. Their failures are added to ``problems``; a crash on a config the frontier checks already
    rejected (verl comparing a string with a number, say) is left out. Returns the status for the summary."""
    import contextlib
    import io

    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils import config as vuc
    from verl.utils.device import auto_set_device

    from verl_frontier.validation import hook_disabled

    earlier = bool(problems)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), hook_disabled():
            auto_set_device(config)
            vuc.validate_config(
                config=config,
                use_reference_policy=need_reference_policy(config),
                use_critic=need_critic(config),
            )
    except Exception as exc:  # noqa: BLE001 - verl's checks raise assorted types
        lines = getattr(exc, "errors", None)
        if lines:  # the CPU platform's checks: the frontier cpu_platform check may have reported them already
            problems.extend(line for line in lines if line not in problems)
        elif not earlier or isinstance(exc, AssertionError | ValueError):
            problems.append(f"verl validate_config: {type(exc).__name__}: {exc}")
        return "failed"
    return "passed"


@app.command()
@_handles_errors
def validate(
    recipe: Annotated[str, typer.Argument(help="Recipe name (folder under the recipes directory) or path.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="Hydra overrides, e.g. data.train_files=/x.")] = None,
    config_name: Annotated[
        str | None, typer.Option("--config-name", "-c", help="Config in the recipe folder (default: <recipe>.yaml).")
    ] = None,
    skip_check: Annotated[
        list[str] | None,
        typer.Option(
            "--skip-check",
            help="Skip a frontier check: data_files, model_paths, world_size, schemas, registered_names, "
            "verl_types, distillation_temperature, cpu_platform, or a method's (paced, ace, opsdc, ...).",
        ),
    ] = None,
    no_verl: Annotated[bool, typer.Option("--no-verl", help="Do not run verl's own validate_config.")] = False,
    show: Annotated[bool, typer.Option("--show", help="Print the composed config (YAML).")] = False,
    nodes: Annotated[int | None, typer.Option(help="Launch option: nodes (sets trainer.nnodes).")] = None,
    gpus_per_node: Annotated[
        int | None, typer.Option(help="Launch option: GPUs per node (sets trainer.n_gpus_per_node).")
    ] = None,
    partition: Annotated[str | None, typer.Option(help="Launch option: SLURM partition, checked with sinfo.")] = None,
):
    """Compose RECIPE with OVERRIDES against verl's ppo_trainer config and validate it (no Ray).

    Every check runs; each problem is printed on its own line (exit code 2).

    With launch options (--nodes, --gpus-per-node, --partition) it also checks them the way `frontier launch`
    does: the batch sizes must split over the nodes x GPUs, the partition must be listed by sinfo.
    """
    _quiet_imports()
    import verl  # noqa: F401 - loads the verl.plugins entry points (method registrations, hooks)
    from omegaconf import OmegaConf

    from verl_frontier import recipes as rc
    from verl_frontier.validation import validate_frontier_config

    spec = rc.get_recipe(recipe)
    sizes = [f"trainer.nnodes={nodes}"] * (nodes is not None)
    sizes += [f"trainer.n_gpus_per_node={gpus_per_node}"] * (gpus_per_node is not None)
    config = rc.compose_recipe(spec, [*(overrides or []), *sizes], config_name=config_name)
    rc.resolve_all(config)
    used_config = config_name or spec.default_config
    warnings_out = [f"{key} is not a verl ppo_trainer key" for key in rc.unknown_recipe_keys(spec, used_config)]
    problems: list[str] = []
    checks = _collect(problems, lambda: validate_frontier_config(config, skip=tuple(skip_check or ()))) or []
    if partition is not None:
        from verl_frontier.launch.core import check_partition

        if _collect(problems, lambda: check_partition(partition) or True):
            checks.append("partition")
    verl_status = "skipped"
    if not no_verl:
        verl_status = _run_verl_validate_config(config, problems)
    if problems:
        for line in problems:
            typer.echo(f"error: {' '.join(line.split())}", err=True)
        raise typer.Exit(EXIT_USAGE)
    if show:
        typer.echo(OmegaConf.to_yaml(config))
    for line in warnings_out:
        typer.echo(f"warning: {spec.name}/{used_config}.yaml: {line}", err=True)
    train_files = config.data.train_files
    if OmegaConf.is_config(train_files):
        train_files = OmegaConf.to_container(train_files)
    typer.echo(
        f"OK {spec.name} ({used_config}.yaml): adv_estimator={config.algorithm.adv_estimator} "
        f"model={config.actor_rollout_ref.model.path} rollout={config.actor_rollout_ref.rollout.name} "
        f"nodes={config.trainer.nnodes}x{config.trainer.n_gpus_per_node} device={config.trainer.device} "
        f"train_files={train_files}"
    )
    typer.echo(f"   frontier checks passed: {', '.join(checks) or 'none'}; verl validate_config: {verl_status}")


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    try:
        app(args=argv, prog_name="frontier", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as exc:  # noqa: BLE001 - errors raised outside a command (lazy subcommands, ...)
        if os.environ.get("FRONTIER_DEBUG"):
            raise
        typer.echo(f"error: {type(exc).__name__}: {' '.join(str(exc).split())}", err=True)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
