"""``frontier world build|info|heldout`` (typer app ``world_app``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from verl_frontier.arguments import POSITIVE_INT, SEED, choice, one_line_typer_classes, output_dir, tiny_world

SIZE = choice("full", "small")


WORLD = tiny_world


def _default_world(path: Path | None, size: str, seed: int) -> Path:
    from .paths import world_dir

    if path is not None:
        return path
    d = world_dir(size, seed)
    if not (d / "manifest.json").is_file():
        raise typer.BadParameter(
            f"no world at {d} (run `frontier world build --size {size} --seed {seed}`)", param_hint="path"
        )
    return d


world_app = typer.Typer(
    cls=one_line_typer_classes()[0],
    help="Build and inspect the tiny world (tokenizer, data, teacher, student).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@world_app.command("build")
def build_cmd(
    out: Path | None = typer.Option(
        None,
        "--out",
        help="World dir (default: $FRONTIER_WORLD_DIR or <repo>/.world/<size>-seed<seed>).",
        parser=output_dir.typer,
    ),
    seed: int = typer.Option(0, "--seed", help="Seed; the world is deterministic from it.", parser=SEED.typer),
    size: str = typer.Option("full", "--size", help="full | small (small: < 60 s, for tests).", parser=SIZE.typer),
    force: bool = typer.Option(False, "--force", help="Rebuild even if a matching world is cached."),
    threads: int | None = typer.Option(
        None,
        "--threads",
        help="torch threads in-process (default: 2 for full, 1 for small).",
        parser=POSITIVE_INT.typer,
    ),
    parallel: bool | None = typer.Option(
        None,
        "--parallel/--sequential",
        help="Train teacher and student in two processes, 1 thread each (faster on a shared CPU).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Build the tiny world (cached: skipped if a manifest with the same seed/size/version exists)."""
    from .builder import build, format_figures

    m = build(out=out, seed=seed, size=size, force=force, threads=threads, quiet=quiet, parallel=parallel)
    if quiet:
        typer.echo(format_figures(m))


@world_app.command("info")
def info_cmd(
    path: Path | None = typer.Argument(None, help="World dir (default: as for build).", parser=WORLD.typer),
    seed: int = typer.Option(0, "--seed", parser=SEED.typer),
    size: str = typer.Option("full", "--size", parser=SIZE.typer),
    as_json: bool = typer.Option(False, "--json", help="Print the whole manifest."),
) -> None:
    """Show a world's location, layout and build figures."""
    from .figures import format_figures

    d = _default_world(path, size, seed)
    mf = d / "manifest.json"
    m = json.loads(mf.read_text())
    if as_json:
        typer.echo(json.dumps(m, indent=2))
        return
    typer.echo(f"world: {d}")
    for k, v in m.get("layout", {}).items():
        typer.echo(f"  {k:14s} {d / v}")
    typer.echo(format_figures(m))


@world_app.command("heldout")
def heldout_cmd(
    path: Path | None = typer.Argument(None, help="World dir (default: as for build).", parser=WORLD.typer),
    seed: int = typer.Option(0, "--seed", parser=SEED.typer),
    size: str = typer.Option("full", "--size", parser=SIZE.typer),
    rows_per_cell: int = typer.Option(
        400, "--rows-per-cell", help="Distinct problems per (k, d) cell, at most.", parser=POSITIVE_INT.typer
    ),
) -> None:
    """Write the world's larger held-out set (heldout/test.parquet: test-side problems not in data/test.parquet)."""
    from .heldout import ensure_heldout

    out = ensure_heldout(_default_world(path, size, seed), rows_per_cell)
    typer.echo(f"{out}\n{(out.parent / 'stats.json').read_text()}")


def main() -> None:
    world_app()
