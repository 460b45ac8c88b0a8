"""Science runs: several recipe variants ("arms") x seeds through verl's real trainer, then a table and a PNG.

Each run is ``python -m verl.trainer.main_ppo`` on the given recipe config (``+platform=cpu`` by default) with
the seed applied to verl's data shuffling, rollout sampling and actor data loader, greedy validation every
``test_freq`` steps (and before training), and metrics to a JSONL file. Results are appended to
``<out>/results.json`` after every run (written atomically), so an interrupted study resumes where it
stopped: finished (arm, seed) pairs are skipped.

Used by the ``reproduce.py`` of each method's recipe folder (``make reproduce``)::

    study = Study("paced_fkl", arms=[Arm("uniform", "paced_distill", "paced_distill_tiny", [...]), ...])
    results = run_study(study, seeds=[0, 1, 2], out=Path("outputs/paced_fkl"), steps=40)

The study protocol (a claim about a method is made only this way)
-----------------------------------------------------------------
A protocol study declares a baseline arm, a budget every arm spends exactly (:mod:`.budget`: distinct prompts,
sampled response tokens or optimizer steps, converted into each arm's verl steps), at least 3 seeds when it
bears a claim, the selection set (``data/test.parquet``: verl's validation during training, the only set any
choice may look at) and the final set (``heldout/test.parquet``, evaluated once on each final checkpoint)::

    study = Study("kd_vs_opd", arms, baseline="kd_teacher_sequences", budget=Budget("prompts", 9600),
                  seeds=(0, 1, 2))
    results = run_study(study, None, out, steps=None, test_freq=25, world=world,
                        after_run=final_set_evaluator(study, world))
    payload = study_results(study, results, base_final_scores, selection_n=415)
    write_results(recipe_dir / "results.json", payload)   # validated; load_results re-checks every statistic
    print(results_table(payload)); plot_study(payload, recipe_dir / "study.png")

``run_study`` then runs each arm for its share of the budget, refuses a run whose logged metrics show a
different spend (:func:`.budget.check_spent`), and keeps the curve against prompts seen and wall time.
Statistics (:mod:`.stats`): exact McNemar per seed, an exact sign-flip test over problems stratified by seed
pooled over seeds, t-intervals over seeds and a bootstrap over problems; :mod:`.report`: the results.json
schema, its validating loader, the README table and the PNG.

Top-k forward KL and its clamp at 0
-----------------------------------
verl's ``forward_kl_topk`` returns ``clamp_min(0)`` of sum_k p_T(k) (log p_T(k) - log q_S(k)) over the teacher's
top-k (``verl/trainer/distillation/losses.py``). With k < vocabulary that partial sum is negative whenever the
student puts more mass than the teacher on the teacher's top-k, and the clamp then zeroes the token's gradient,
although the unclamped gradient (q_S(j) P_T(top-k) - p_T(j) on the top-k logits) is a sound pull toward the
teacher. Our ``paced_forward_kl_topk`` (and ``paced_topk`` in its forward-KL stage) applies the same clamp
(``paced_topk_loss``) and inherits the dead tokens. ``paced_reverse_kl_topk`` and ``paced_jsd_topk`` are
divergences between the two distributions renormalised on the top-k (>= 0 by construction, no clamp), so they
keep their gradient. Pick: k = vocabulary size for forward KL (exact; the clamp only removes float round-off,
as in the tiny world's top-k = 102); with k < vocabulary, a renormalised divergence (``paced_jsd_topk`` or
``paced_reverse_kl_topk``), not a clamped forward KL. ``tests/test_study_protocol.py`` shows both facts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from verl_frontier.arguments import POSITIVE_INT, SEED, ArgumentParser, output_dir, savefig_atomic, write_text_atomic
from verl_frontier.studies import budget as budget_module
from verl_frontier.studies.budget import (
    ArmSchedule,
    Budget,
    BudgetMismatch,
    StudyError,
    budget_overrides,
    check_spent,
    schedule,
)
from verl_frontier.tinyworld.paths import repo_root

VAL_ACC_SUFFIX = "/acc/mean@1"


@dataclass
class Arm:
    """One recipe variant: ``recipes/<recipe>/<config_name>.yaml`` plus Hydra overrides."""

    name: str
    recipe: str
    config_name: str
    overrides: list[str] = field(default_factory=list)


MIN_CLAIM_SEEDS = 3


def check_seeds(seeds, claim: bool = True, name: str = "study") -> list[int]:
    """Distinct non-negative seeds; at least ``MIN_CLAIM_SEEDS`` when the study bears a claim."""
    seeds = list(seeds or [])
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise StudyError(f"{name}: seed {bad[0]!r} is not a non-negative integer")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{name}: seed {sorted(s for s in seeds if seeds.count(s) > 1)[0]} given twice")
    if claim and len(seeds) < MIN_CLAIM_SEEDS:
        raise StudyError(
            f"{name} bears a claim and needs at least {MIN_CLAIM_SEEDS} seeds, got {len(seeds)} ({seeds}); "
            "add seeds, or declare it claim=False (exploratory)"
        )
    return seeds


@dataclass
class Study:
    """Arms x seeds through verl. Without ``budget`` an exploratory study (steps given to ``run_study``); with
    ``budget`` a protocol study (module docstring): ``baseline`` names an arm, and a claim-bearing study
    (``claim``, the default) declares at least 3 ``seeds``."""

    name: str
    arms: list[Arm]
    metric_keys: tuple[str, ...] = ()  # extra per-step training metrics to keep (besides validation accuracy)
    baseline: str | None = None
    budget: Budget | None = None
    seeds: tuple[int, ...] = ()
    claim: bool = True
    selection_set: str = "data/test.parquet"
    final_set: str = "heldout/test.parquet"

    def __post_init__(self):
        names = [arm.name for arm in self.arms]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise StudyError(f"study {self.name!r}: arm name {repeated[0]!r} used twice")
        if self.budget is None:
            return
        if self.baseline not in names:
            raise StudyError(f"study {self.name!r}: baseline {self.baseline!r} is not one of its arms {names}")
        if self.selection_set == self.final_set:
            raise StudyError(f"study {self.name!r}: the selection set and the final set are both {self.final_set}")
        self.seeds = tuple(check_seeds(self.seeds, self.claim, f"study {self.name!r}"))


def seed_overrides(seed: int) -> list[str]:
    return [
        f"data.seed={seed}",
        f"actor_rollout_ref.rollout.seed={seed}",
        f"actor_rollout_ref.actor.data_loader_seed={seed}",
    ]


#: One real verl run at a time on a machine (the e2e tests take the same lock): two concurrent CPU runs would
#: both be slow and their timings meaningless.
MACHINE_LOCK = Path(os.environ.get("FRONTIER_MACHINE_LOCK", "/tmp/verl-frontier-machine.lock"))


@contextlib.contextmanager
def machine_lock():
    with open(MACHINE_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_metrics(path: Path) -> dict[int, dict]:
    steps: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                steps.setdefault(record["step"], {}).update(record["data"])
    return steps


def validation_accuracy(steps: dict[int, dict]) -> dict[int, float]:
    """Greedy held-out accuracy per step: verl's ``val-core/<data_source>/acc/mean@1`` (mean over sources)."""
    out = {}
    for step, data in sorted(steps.items()):
        values = [v for k, v in data.items() if k.startswith("val-core/") and k.endswith(VAL_ACC_SUFFIX)]
        if values:
            out[step] = float(sum(values) / len(values))
    return out


def write_json_atomic(path: Path, payload) -> None:
    """``payload`` as JSON, written to a temporary file next to ``path`` and renamed into place."""
    write_text_atomic(path, json.dumps(payload, indent=2))


class StudyParser(ArgumentParser):
    """One-line errors (exit code 2); ``parse_with_overrides`` also rejects a seed given twice."""

    def parse_with_overrides(self, argv=None):
        args, extra = super().parse_with_overrides(argv)
        seeds = getattr(args, "seeds", None) or []
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            self.error(f"argument --seeds: seed {repeated[0]} given twice")
        return args, extra


def study_parser(doc: str, name: str, seeds: list[int], steps: int, test_freq: int = 10) -> StudyParser:
    """The options every ``recipes/*/reproduce.py`` takes: ``--seeds``, ``--steps``, ``--test-freq``, ``--out``
    (default ``outputs/<name>_study``), each checked while parsing; with ``parse_with_overrides`` the other
    arguments must be Hydra overrides and are passed to verl."""
    parser = StudyParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=SEED, nargs="+", default=list(seeds))
    parser.add_argument("--steps", type=POSITIVE_INT, default=steps)
    parser.add_argument("--test-freq", type=POSITIVE_INT, default=test_freq)
    parser.add_argument("--out", type=output_dir, default=repo_root() / "outputs" / f"{name}_study")
    return parser


def full_world() -> Path:
    """The full tiny world (seed 0) the studies run in, built (cached) if missing."""
    from verl_frontier.tinyworld import build
    from verl_frontier.tinyworld.paths import world_dir

    world = world_dir("full", 0)
    build(out=world, seed=0, size="full")
    return world


def publish_results(recipe_dir: Path, study_out: Path, payload) -> None:
    """Write a study's summary next to its recipe (``results.json``, atomically) and copy the per-run data of
    ``<study_out>/results.json`` to ``results_runs.json`` there, so the README's figures have their data."""
    write_json_atomic(recipe_dir / "results.json", payload)
    shutil.copy(study_out / "results.json", recipe_dir / "results_runs.json")


def run_arm(
    arm: Arm,
    seed: int,
    out: Path,
    steps: int,
    test_freq: int,
    world: Path | None = None,
    platform: str | None = "cpu",
    extra: list[str] = (),
    save_final: bool = False,
    console: bool = False,
) -> dict:
    """Run one (arm, seed) through verl; returns its validation curve, kept metrics and wall time.

    ``save_final``: keep verl's checkpoint of the last step (``final_checkpoint(out, steps)``) for evaluation.
    ``console``: print the command and let verl's console progress through (else it goes to ``train.log``)."""
    out = Path(out).resolve()  # verl runs with cwd=out: a relative metrics/checkpoint path would land inside it
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(metrics_path), "RAY_USAGE_STATS_ENABLED": "0"}
    if world is not None:
        env["FRONTIER_WORLD_DIR"] = str(world)
    cmd = [
        sys.executable, "-m", "verl.trainer.main_ppo",
        "--config-path", str(repo_root() / "recipes" / arm.recipe), "--config-name", arm.config_name,
        *([f"+platform={platform}"] if platform else []),
        "trainer.logger=[console,file]", f"trainer.total_training_steps={steps}", f"trainer.test_freq={test_freq}",
        "trainer.val_before_train=true", f"trainer.save_freq={steps if save_final else -1}",
        "trainer.resume_mode=disable",
        f"trainer.default_local_dir={out / 'checkpoints'}", f"trainer.experiment_name={arm.name}-seed{seed}",
        *seed_overrides(seed), *arm.overrides, *extra,
    ]  # fmt: skip
    if console:
        print("$ " + " ".join(cmd), flush=True)
    with machine_lock(), open(out / "train.log", "w") as log:
        if not console:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
        start = time.perf_counter()
        sink = {} if console else {"stdout": log, "stderr": subprocess.STDOUT}
        proc = subprocess.run(cmd, env=env, cwd=out, **sink)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = [] if console else (out / "train.log").read_text().splitlines()[-30:]
        raise RuntimeError(f"{arm.name} seed {seed} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    logged = read_metrics(metrics_path)
    return {"val_acc": validation_accuracy(logged), "wall_s": wall, "steps": steps, "metrics": logged}


def evaluate_pass_at_k(model: Path, test: Path, n: int = 8, limit: int | None = None) -> dict:
    """Greedy accuracy (also per problem, for ``evaluation.paired``) and pass@1..n from ``n`` samples at T = 1 of
    one model (HF dir or verl checkpoint), holding the machine lock (HF generate uses both cores)."""
    from verl_frontier.evaluation import evaluate

    with machine_lock():
        result = evaluate(model, test, n=n, temperature=1.0, greedy=True, seed=0, limit=limit)
    keep = ("greedy_accuracy", "greedy_scores", "sample_correct", "pass_at_k", "greedy_mean_response_tokens",
            "by_difficulty", "seconds")  # fmt: skip
    return {key: result[key] for key in keep}


def base_evaluation(
    out: Path, world: Path, n: int = 8, limit: int | None = None, test: Path | None = None, name: str = "base_eval"
) -> dict:
    """``evaluate_pass_at_k`` of the world's base student on ``test`` (default ``data/test.parquet``), computed
    once per study (``<out>/<name>.json``)."""
    path = out / f"{name}.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if "sample_correct" in cached:  # else written before per-problem sample counts were kept: redo
            return cached
    out.mkdir(parents=True, exist_ok=True)
    base = evaluate_pass_at_k(world / "student", test or world / "data" / "test.parquet", n, limit)
    write_json_atomic(path, base)
    return base


def final_checkpoint(run_dir: Path, steps: int) -> Path:
    """verl's checkpoint of the last step of a run made by ``run_arm(..., save_final=True)``."""
    return run_dir / "checkpoints" / f"global_step_{steps}"


def run_study(
    study: Study,
    seeds: list[int] | None,
    out: Path,
    steps: int | None,
    test_freq: int = 10,
    world: Path | None = None,
    extra: list[str] = (),
    after_run=None,
    plans: dict[str, ArmSchedule] | None = None,
) -> dict:
    """Run every arm for every seed (resumable); returns and writes ``<out>/results.json``.

    ``after_run(arm, seed, run_dir, run)``, if given, is called after each run (e.g. to evaluate its final
    checkpoint) and may add entries to the ``run`` dict before it is saved.

    A protocol study (``study.budget`` set): ``seeds`` None means ``study.seeds`` (given seeds are checked the
    same way); ``steps`` is ignored, each arm runs its share of the budget (``plans``, default
    ``schedule(study, extra)``); a run whose logged metrics show another spend raises ``BudgetMismatch`` and is
    not recorded; each run records ``budget`` (the check) and ``curve`` (``report.curve_points``)."""
    if study.budget is not None:
        seeds = check_seeds(study.seeds if seeds is None else seeds, study.claim, f"study {study.name!r}")
        plans = plans or schedule(study, extra)
    else:
        plans = None  # an exploratory study runs every arm for ``steps``
    keep = set(study.metric_keys) | (set(budget_module.METRIC_KEYS) if plans else set())
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"study": study.name, "runs": {}}
    total = len(study.arms) * len(seeds)
    done = 0
    for seed in seeds:
        for arm in study.arms:
            key = f"{arm.name}/seed{seed}"
            done += 1
            if key in results["runs"]:
                print(f"[{done}/{total}] {key}: done earlier, skipped", flush=True)
                continue
            print(
                f"[{done}/{total}] {key}: running {arm.recipe}/{arm.config_name} {' '.join(arm.overrides)}", flush=True
            )
            run_dir = out / arm.name / f"seed{seed}"
            arm_steps = plans[arm.name].steps if plans else steps
            run = run_arm(
                arm, seed, run_dir, arm_steps, test_freq, world, extra=list(extra), save_final=after_run is not None
            )
            logged = run.pop("metrics")
            if plans:
                from verl_frontier.studies.report import curve_points

                run["budget"] = check_spent(study.budget, plans[arm.name], logged, seed)
                run["curve"] = curve_points(run["val_acc"], logged, plans[arm.name].settings["train_batch_size"])
            kept = {str(step): {k: v for k, v in data.items() if k in keep} for step, data in logged.items()}
            run["kept_metrics"] = {s: d for s, d in kept.items() if d}
            run["val_acc"] = {str(k): v for k, v in run["val_acc"].items()}
            if after_run is not None:
                after_run(arm, seed, run_dir, run)
            results["runs"][key] = run
            write_json_atomic(results_path, results)
            final = run["val_acc"][max(run["val_acc"], key=int)] if run["val_acc"] else float("nan")
            print(f"[{done}/{total}] {key}: final greedy accuracy {final:.3f} in {run['wall_s']:.0f} s", flush=True)
    return results


def final_set_evaluator(study: Study, world: Path, keep_checkpoints: bool = False):
    """``after_run`` for a protocol study: greedy scores of the run's final checkpoint on ``world /
    study.final_set`` (``run["final_scores"]``, ``run["final_accuracy"]``); the checkpoint is removed after."""

    def after_run(arm, seed, run_dir, run):
        checkpoint = final_checkpoint(run_dir, run["steps"])
        result = evaluate_pass_at_k(checkpoint, Path(world) / study.final_set, n=1)
        run["final_scores"] = [int(s) for s in result["greedy_scores"]]
        run["final_accuracy"] = float(result["greedy_accuracy"])
        if not keep_checkpoints:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)

    return after_run


def summarize(results: dict, arms: list[str]) -> dict[str, dict]:
    """Per arm: initial and final accuracy per seed, their mean and standard deviation, mean wall time."""
    summary = {}
    for arm in arms:
        runs = [run for key, run in results["runs"].items() if key.split("/")[0] == arm]
        if not runs:
            continue
        finals = [run["val_acc"][max(run["val_acc"], key=int)] for run in runs]
        initial = [run["val_acc"][min(run["val_acc"], key=int)] for run in runs]
        summary[arm] = {
            "seeds": len(runs),
            "initial": statistics.fmean(initial),
            "final_mean": statistics.fmean(finals),
            "final_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "finals": finals,
            "wall_s": statistics.fmean(run["wall_s"] for run in runs),
        }
    return summary


def mean_std_by_key(curves: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Per key present in every curve: (mean, sample standard deviation; 0 for one curve) over the curves,
    e.g. pass@k per k over seeds. Keys are kept in the first curve's order."""
    if not curves:
        return {}
    keys = [k for k in curves[0] if all(k in c for c in curves[1:])]
    out = {}
    for key in keys:
        values = [float(c[key]) for c in curves]
        out[key] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
    return out


def markdown_table(summary: dict[str, dict]) -> str:
    lines = [
        "| arm | seeds | greedy acc. before | after (mean ± sd) | per seed | wall time / run |",
        "|---|---|---|---|---|---|",
    ]
    for arm, s in summary.items():
        per_seed = ", ".join(f"{v:.3f}" for v in s["finals"])
        lines.append(
            f"| {arm} | {s['seeds']} | {s['initial']:.3f} | {s['final_mean']:.3f} ± {s['final_std']:.3f} | "
            f"{per_seed} | {s['wall_s'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def plot_curves(results: dict, arms: list[str], path: Path, title: str) -> None:
    """Validation accuracy over steps: thin line per seed, thick line for the mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, arm in enumerate(arms):
        color = f"C{index}"
        curves = [run["val_acc"] for key, run in results["runs"].items() if key.split("/")[0] == arm]
        if not curves:
            continue
        for curve in curves:
            xs = sorted(int(k) for k in curve)
            ax.plot(xs, [curve[str(x)] for x in xs], color=color, alpha=0.25, linewidth=1)
        common = sorted(set.intersection(*(set(int(k) for k in c) for c in curves)))
        ax.plot(
            common,
            [statistics.fmean(c[str(x)] for c in curves) for x in common],
            color=color,
            linewidth=2.5,
            marker="o",
            label=f"{arm} (mean of {len(curves)})",
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out greedy accuracy")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    savefig_atomic(fig, path, dpi=120)
    plt.close(fig)


from verl_frontier.studies.report import (  # noqa: E402  (report imports this package's submodules)
    ResultsError,
    load_results,
    plot_study,
    results_table,
    study_results,
    validate_results,
    write_results,
)

__all__ = [
    "Arm", "ArmSchedule", "Budget", "BudgetMismatch", "ResultsError", "Study", "StudyError", "base_evaluation",
    "budget_overrides", "check_seeds", "check_spent", "evaluate_pass_at_k", "final_checkpoint",
    "final_set_evaluator", "full_world", "load_results", "machine_lock", "markdown_table", "mean_std_by_key",
    "plot_curves", "plot_study", "publish_results", "read_metrics", "results_table", "run_arm", "run_study",
    "schedule", "seed_overrides", "study_parser", "study_results", "summarize", "validate_results",
    "validation_accuracy", "write_json_atomic", "write_results",
]  # fmt: skip
