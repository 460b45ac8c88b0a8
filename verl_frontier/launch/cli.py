"""``frontier launch``: run a recipe on this node, submit it to SLURM, or submit it to a running Ray cluster."""

from __future__ import annotations

import json
import re
from typing import Annotated

import typer

from verl_frontier.arguments import POSITIVE_FLOAT, POSITIVE_INT, Kind, choice, output_dir
from verl_frontier.cli import _handles_errors, _quiet_imports

EXIT_JOB_FAILED = 1
MODE = choice("local", "slurm", "ray")
#: sbatch --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or UNLIMITED
_SLURM_TIME = re.compile(r"(\d+)(:\d{1,2}(:\d{1,2})?)?|\d+-\d{1,2}(:\d{1,2}(:\d{1,2})?)?|UNLIMITED|INFINITE", re.I)


def _slurm_time(value) -> str:
    text = str(value).strip()
    if not _SLURM_TIME.fullmatch(text):
        raise ValueError(f"not a SLURM time limit (minutes, HH:MM:SS or D-HH:MM:SS), got {value!r}")
    if re.fullmatch(r"[0:-]+", text):
        raise ValueError(f"must be longer than zero, got {value!r}")
    return text


SLURM_TIME = Kind("time", _slurm_time)


@_handles_errors
def launch_command(
    recipe: Annotated[str, typer.Argument(help="Recipe name (folder under the recipes directory) or its path.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Hydra overrides for verl's trainer; +platform=cpu = CPU mode.")
    ] = None,
    mode: Annotated[
        str, typer.Option("--mode", "-m", help="local | slurm (sbatch) | ray (Ray Jobs API).", parser=MODE.typer)
    ] = "local",
    config_name: Annotated[
        str | None, typer.Option("--config-name", "-c", help="Config in the recipe folder (default: <recipe>.yaml).")
    ] = None,
    nodes: Annotated[
        int | None,
        typer.Option(help="Training nodes: trainer.nnodes (default: the recipe's).", parser=POSITIVE_INT.typer),
    ] = None,
    gpus_per_node: Annotated[
        int | None,
        typer.Option(
            help="Training GPUs per node: trainer.n_gpus_per_node (default: the recipe's).", parser=POSITIVE_INT.typer
        ),
    ] = None,
    node_gpus: Annotated[
        int | None,
        typer.Option(
            help="GPUs one cluster node has (default 8): the job packs all of verl's resource pools onto such nodes.",
            parser=POSITIVE_INT.typer,
        ),
    ] = None,
    cpus_per_node: Annotated[
        int | None, typer.Option(help="SLURM --cpus-per-task (one task per node).", parser=POSITIVE_INT.typer)
    ] = None,
    partition: Annotated[str | None, typer.Option(help="SLURM partition (checked against sinfo).")] = None,
    time_limit: Annotated[
        str | None, typer.Option("--time", help="SLURM time limit, e.g. 24:00:00.", parser=SLURM_TIME.typer)
    ] = None,
    account: Annotated[str | None, typer.Option(help="SLURM account.")] = None,
    setup: Annotated[
        list[str] | None,
        typer.Option(help="Shell line run first in the job (repeatable): 'source /x/.venv/bin/activate', ..."),
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE for the job and its Ray workers (repeatable).")
    ] = None,
    sbatch_arg: Annotated[
        list[str] | None, typer.Option(help="Extra sbatch flag, e.g. --exclusive (repeatable).")
    ] = None,
    job_name: Annotated[str | None, typer.Option(help="SLURM job name (default: the config name).")] = None,
    run_dir: Annotated[
        str | None,
        typer.Option(
            help="Checkpoints in RUN_DIR/checkpoints, each launch in RUN_DIR/<id>-<mode>/.", parser=output_dir.typer
        ),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="ray mode: the cluster's dashboard address, http://head:8265.")
    ] = None,
    python: Annotated[
        str | None, typer.Option(help="Python with verl-frontier on the nodes (default: this one).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="slurm/ray: wait for the job; exit 1 unless it succeeded.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(help="With --wait: give up waiting after this many seconds.", parser=POSITIVE_FLOAT.typer),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and print the plan (and job script); submit nothing.")
    ] = False,
    no_validate: Annotated[bool, typer.Option("--no-validate", help="Skip the config and partition checks.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the launch record as JSON.")] = False,
):
    """Launch RECIPE with OVERRIDES: single node, a SLURM job, or a job on a running Ray cluster.

    Checks run first (config, world size vs batch sizes, SLURM partition); the launch record (job id,
    checkpoint dir, metrics file, log) is printed and written to <launch dir>/launch.json.
    """
    _quiet_imports()
    from verl_frontier.launch import core

    options = core.LaunchOptions(
        mode=mode,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        node_gpus=node_gpus,
        cpus_per_node=cpus_per_node,
        partition=partition,
        time=time_limit,
        account=account,
        setup=list(setup or []),
        env=core.parse_env(list(env or [])),
        sbatch_args=list(sbatch_arg or []),
        job_name=job_name,
        run_dir=None if run_dir is None else str(run_dir),
        ray_address=ray_address,
        python=python,
    )
    plan = core.plan_launch(recipe, list(overrides or []), options, config_name=config_name, validate=not no_validate)

    def report(extra: dict | None = None) -> None:
        record = {**plan.record(), **(extra or {})}
        if as_json:
            typer.echo(json.dumps(record))
        else:
            for key, value in record.items():
                typer.echo(f"{key:<15} {value}")

    if dry_run:
        if plan.mode == "slurm":
            typer.echo(core.render_sbatch(plan), err=as_json)
        elif plan.mode == "ray":
            typer.echo(core.ray_entrypoint(plan), err=as_json)
        report()
        return
    if plan.mode == "local":
        code = core.run_local(plan)
        report({"returncode": code})
        raise typer.Exit(code)
    if plan.mode == "slurm":
        core.submit_slurm(plan)
        state = core.wait_slurm(plan.job_id, timeout) if wait else None
        ok = state in (None, "COMPLETED")
    else:
        core.submit_ray(plan)
        state = core.wait_ray(plan, timeout) if wait else None
        ok = state in (None, "SUCCEEDED")
    report({"state": state} if wait else None)
    if not ok:
        raise typer.Exit(EXIT_JOB_FAILED)
