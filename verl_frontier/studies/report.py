"""A study's results.json (built from its runs, validated on load), the README table rendered from it, and its
PNG. READMEs carry :func:`results_table` output only, never hand-typed numbers.

Schema (``SCHEMA``), all accuracies greedy, on the final set unless named otherwise::

    {"schema": 1, "study": str, "claim": bool, "baseline": arm name,
     "budget": {"unit", "amount", "tolerance", "description"},
     "selection_set": {"path", "n_problems"},      # verl's validation during training (curves, choices)
     "final_set": {"path", "n_problems"},          # evaluated once, on each run's final checkpoint
     "initial_scores": "0110...",                  # the base student, one character per final-set problem
     "initial_accuracy": float,
     "arms": {name: {
         "recipe", "config_name", "overrides", "seeds": [int],
         "runs": {"<seed>": {"wall_s", "steps", "budget_spent", "final_accuracy", "final_scores",
                             "curve": [{"step", "prompts", "wall_s", "accuracy"}]}},   # curve: selection set
         "initial_accuracy", "budget_spent": [per seed], "wall_s": [per seed],
         "final_accuracy": stats.t_interval over seeds, "final_accuracy_bootstrap": stats.bootstrap_interval,
         "vs_baseline": null for the baseline, else
             {"mcnemar": {"<seed>": {"only_baseline", "only_arm", "p_value"}},
              "pooled": {"only_baseline", "only_arm", "n", "p_value", "method"},
              "difference": stats.t_interval of (arm - baseline) final accuracy, paired by seed}}}}
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from verl_frontier.studies import stats
from verl_frontier.studies.budget import UNITS, Budget, StudyError

SCHEMA = 1
POOLED_METHOD = "exact sign-flip over problems stratified by seed (exact CMH for matched pairs)"


class ResultsError(StudyError):
    """A results.json that does not follow the schema or whose statistics do not match its scores."""


def encode_scores(scores: Sequence[float]) -> str:
    bad = [s for s in scores if s not in (0, 1)]
    if bad:
        raise ResultsError(f"per-problem scores must be 0 or 1, got {bad[0]!r}")
    return "".join("1" if s == 1 else "0" for s in scores)


def decode_scores(text: str) -> list[int]:
    if not isinstance(text, str) or set(text) - {"0", "1"}:
        raise ResultsError("per-problem scores must be a string of 0/1 characters")
    return [int(ch) for ch in text]


def curve_points(val_acc: Mapping, metrics: Mapping, prompts_per_step: int) -> list[dict]:
    """Selection-set accuracy per validated step with distinct prompts seen and training wall time (cumulative
    ``timing_s/step`` of the logged steps, validation excluded) at that step."""
    times = {int(s): float(d["timing_s/step"]) for s, d in metrics.items() if "timing_s/step" in d}
    points = []
    for step in sorted(int(s) for s in val_acc):
        acc = val_acc[step] if step in val_acc else val_acc[str(step)]
        points.append({"step": step, "prompts": step * prompts_per_step,
                       "wall_s": sum(t for s, t in times.items() if s <= step), "accuracy": float(acc)})  # fmt: skip
    return points


def _interval(values: Sequence[float]) -> dict:
    """``stats.t_interval`` of ``values``; with one value (exploratory study) the interval is null."""
    if len(values) >= 2:
        return stats.t_interval(values)
    mean = float(values[0]) if values else None
    return {"mean": mean, "low": None, "high": None, "sd": None, "n": len(values), "level": 0.95,
            "method": "student-t over seeds"}  # fmt: skip


def _ci(interval: Mapping, signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    if interval["low"] is None:
        return fmt.format(interval["mean"])
    return f"{fmt.format(interval['mean'])} [{fmt.format(interval['low'])}, {fmt.format(interval['high'])}]"


def _arm_statistics(runs: Mapping[str, Mapping], baseline_runs: Mapping[str, Mapping] | None) -> dict:
    seeds = sorted(runs, key=int)
    scores = [decode_scores(runs[s]["final_scores"]) for s in seeds]
    finals = [sum(sc) / len(sc) for sc in scores]
    out = {
        "final_accuracy": _interval(finals),
        "final_accuracy_bootstrap": stats.bootstrap_interval(scores),
        "vs_baseline": None,
    }
    if baseline_runs is not None:
        missing = [s for s in seeds if s not in baseline_runs]
        if missing:
            raise ResultsError(f"seed {missing[0]} has no baseline run to pair with")
        base = [decode_scores(baseline_runs[s]["final_scores"]) for s in seeds]
        pooled = stats.pooled_mcnemar_exact(list(zip(base, scores)))
        out["vs_baseline"] = {
            "mcnemar": {
                s: {"only_baseline": r["only_before"], "only_arm": r["only_after"], "p_value": r["p_value"]}
                for s, r in zip(seeds, pooled["per_seed"])
            },
            "pooled": {
                "only_baseline": pooled["only_baseline"],
                "only_arm": pooled["only_arm"],
                "n": pooled["n"],
                "p_value": pooled["p_value"],
                "method": POOLED_METHOD,
            },  # fmt: skip
            "difference": _interval([a - sum(b) / len(b) for a, b in zip(finals, base)]),
        }
    return out


def study_results(study, results: Mapping, initial_scores: Sequence[float], selection_n: int | None = None) -> dict:
    """The results.json payload of a protocol study from ``run_study``'s ``results`` (its runs carry
    ``budget``, ``curve`` and ``final_scores``) and the base student's final-set ``initial_scores``."""
    if study.budget is None or study.baseline is None:
        raise StudyError(f"study {study.name!r} is not a protocol study (no budget or baseline)")
    initial = encode_scores(initial_scores)
    arms = {}
    for arm in study.arms:
        runs = {}
        for key, run in results["runs"].items():
            name, _, seed = key.partition("/seed")
            if name != arm.name:
                continue
            if "final_scores" not in run or "budget" not in run:
                raise ResultsError(f"{key} has no final-set scores or budget record (run it through run_study)")
            scores = run["final_scores"] if isinstance(run["final_scores"], str) else encode_scores(run["final_scores"])
            runs[seed] = {"wall_s": float(run["wall_s"]), "steps": int(run["steps"]),
                          "budget_spent": float(run["budget"]["spent"]),
                          "final_accuracy": scores.count("1") / len(scores), "final_scores": scores,
                          "curve": list(run.get("curve", []))}  # fmt: skip
        seeds = sorted(runs, key=int)
        arms[arm.name] = {
            "recipe": arm.recipe, "config_name": arm.config_name, "overrides": list(arm.overrides),
            "seeds": [int(s) for s in seeds], "runs": {s: runs[s] for s in seeds},
            "initial_accuracy": initial.count("1") / len(initial),
            "budget_spent": [runs[s]["budget_spent"] for s in seeds], "wall_s": [runs[s]["wall_s"] for s in seeds],
        }  # fmt: skip
    payload = {
        "schema": SCHEMA,
        "study": study.name,
        "claim": study.claim,
        "baseline": study.baseline,
        "budget": {
            "unit": study.budget.unit,
            "amount": study.budget.amount,
            "tolerance": study.budget.tolerance,
            "description": study.budget.describe(),
        },  # fmt: skip
        "selection_set": {"path": study.selection_set, "n_problems": selection_n},
        "final_set": {"path": study.final_set, "n_problems": len(initial)},
        "initial_scores": initial,
        "initial_accuracy": initial.count("1") / len(initial),
        "arms": arms,
    }
    _check_structure(payload)
    baseline_runs = arms[study.baseline]["runs"]
    for name, arm in arms.items():
        arm.update(_arm_statistics(arm["runs"], None if name == study.baseline else baseline_runs))
    return payload


def write_results(path: Path, payload: Mapping) -> None:
    """Validate ``payload`` (as :func:`validate_results`) and write it atomically."""
    from verl_frontier.studies import write_json_atomic

    validate_results(payload)
    write_json_atomic(Path(path), payload)


def _require(mapping, key, kind, where):
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise ResultsError(f"{where}: missing {key!r}")
    value = mapping[key]
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise ResultsError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _check_structure(payload: Mapping) -> None:
    if _require(payload, "schema", int, "results") != SCHEMA:
        raise ResultsError(f"results: schema {payload['schema']} is not {SCHEMA}")
    budget = _require(payload, "budget", dict, "results")
    try:
        budget_obj = Budget(budget.get("unit"), budget.get("amount"), budget.get("tolerance", 0.0))
    except StudyError as exc:
        raise ResultsError(f"results: budget: {exc}") from None
    n = _require(_require(payload, "final_set", dict, "results"), "n_problems", int, "final_set")
    _require(payload["final_set"], "path", str, "final_set")
    _require(_require(payload, "selection_set", dict, "results"), "path", str, "selection_set")
    if len(decode_scores(_require(payload, "initial_scores", str, "results"))) != n:
        raise ResultsError(f"results: initial_scores has not {n} problems")
    arms = _require(payload, "arms", dict, "results")
    baseline = _require(payload, "baseline", str, "results")
    if baseline not in arms:
        raise ResultsError(f"results: baseline {baseline!r} is not one of the arms {sorted(arms)}")
    claim = _require(payload, "claim", bool, "results")
    for name, arm in arms.items():
        where = f"arm {name!r}"
        seeds = _require(arm, "seeds", list, where)
        if not seeds:
            raise ResultsError(f"{where}: no runs")
        runs = _require(arm, "runs", dict, where)
        if sorted(runs, key=int) != [str(s) for s in sorted(seeds)]:
            raise ResultsError(f"{where}: runs {sorted(runs)} do not match seeds {seeds}")
        if claim and len(seeds) < 3:
            raise ResultsError(f"{where}: a claim-bearing study needs at least 3 seeds, has {len(seeds)}")
        for seed, run in runs.items():
            w = f"{where} seed {seed}"
            for key in ("wall_s", "budget_spent", "final_accuracy"):
                _require(run, key, float, w)
            _require(run, "steps", int, w)
            scores = decode_scores(_require(run, "final_scores", str, w))
            if len(scores) != n:
                raise ResultsError(f"{w}: {len(scores)} final-set scores, the final set has {n} problems")
            if abs(run["budget_spent"] - budget_obj.amount) > budget_obj.tolerance * budget_obj.amount + 1e-9:
                raise ResultsError(
                    f"{w}: spent {run['budget_spent']} {UNITS[budget_obj.unit]}, not {budget_obj.amount}"
                )
            for point in _require(run, "curve", list, w):
                for key in ("step", "prompts", "wall_s", "accuracy"):
                    _require(point, key, float, f"{w} curve")


def _close(a, b) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=1e-9)
    return a == b


def validate_results(payload: Mapping) -> Mapping:
    """Check the schema, and that every stored accuracy and statistic is the one its scores give."""
    _check_structure(payload)
    n = payload["final_set"]["n_problems"]
    if not _close(payload["initial_accuracy"], payload["initial_scores"].count("1") / n):
        raise ResultsError("results: initial_accuracy does not match initial_scores")
    arms, baseline = payload["arms"], payload["baseline"]
    for name, arm in arms.items():
        for seed, run in arm["runs"].items():
            if not _close(run["final_accuracy"], run["final_scores"].count("1") / n):
                raise ResultsError(f"arm {name!r} seed {seed}: final_accuracy does not match its final_scores")
        expected = _arm_statistics(arm["runs"], None if name == baseline else arms[baseline]["runs"])
        for key, value in expected.items():
            if not _close(arm.get(key), value):
                raise ResultsError(f"arm {name!r}: {key} does not match the statistics of its scores")
    return payload


def load_results(path: Path) -> dict:
    """Read and validate a study's results.json (:func:`validate_results`)."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: {exc}") from None
    try:
        return validate_results(payload)
    except ResultsError as exc:
        raise ResultsError(f"{path}: {exc}") from None


def _p(value: float) -> str:
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.1e}"


def results_table(payload: Mapping) -> str:
    """The README's Markdown table of a (validated) results.json, with a one-line caption of the protocol."""
    validate_results(payload)
    final, budget = payload["final_set"], payload["budget"]
    baseline = payload["baseline"]
    lines = [
        f"Final set `{final['path']}` ({final['n_problems']} problems, greedy); every arm: {budget['description']}; "
        f"mean over seeds with 95 % t-interval; p: exact McNemar vs `{baseline}` per seed, pooled: exact sign-flip "
        f"stratified by seed{'' if payload['claim'] else ' (exploratory: no claim)'}.",
        "",
        "| arm | seeds | budget spent | wall time / run | before | after: mean [95 % CI] | per seed | "
        "Δ vs baseline [95 % CI] | McNemar p per seed | pooled p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, arm in payload["arms"].items():
        acc = arm["final_accuracy"]
        per_seed = ", ".join(f"{arm['runs'][str(s)]['final_accuracy']:.3f}" for s in arm["seeds"])
        spent = sorted(set(arm["budget_spent"]))
        spent_text = f"{spent[0]:,.0f}" if len(spent) == 1 else f"{spent[0]:,.0f}–{spent[-1]:,.0f}"
        vs = arm["vs_baseline"]
        if vs is None:
            delta, per_p, pooled = "(baseline)", "–", "–"
        else:
            delta = _ci(vs["difference"], signed=True)
            per_p = ", ".join(_p(vs["mcnemar"][str(s)]["p_value"]) for s in arm["seeds"])
            pooled = f"{_p(vs['pooled']['p_value'])} ({vs['pooled']['only_baseline']} / {vs['pooled']['only_arm']})"
        lines.append(
            f"| {name} | {len(arm['seeds'])} | {spent_text} | {statistics.fmean(arm['wall_s']) / 60:.1f} min | "
            f"{arm['initial_accuracy']:.3f} | {_ci(acc)} | {per_seed} | "
            f"{delta} | {per_p} | {pooled} |"
        )
    return "\n".join(lines)


def _mean_band(curves: list[list[dict]], x_key: str):
    """Per step present in every seed's curve: mean x, and mean / min / max accuracy over seeds."""
    common = sorted(set.intersection(*({p["step"] for p in c} for c in curves)))
    rows = []
    for step in common:
        points = [next(p for p in c if p["step"] == step) for c in curves]
        accs = [p["accuracy"] for p in points]
        rows.append((statistics.fmean(p[x_key] for p in points), statistics.fmean(accs), min(accs), max(accs)))
    return rows


def plot_study(payload: Mapping, path: Path, title: str | None = None) -> Path:
    """One PNG: accuracy against distinct prompts seen (left) and training wall time (right), a line per arm
    (mean over seeds of the selection-set curve, min-max over seeds shaded) and, at the end, the final-set
    mean with its 95 % t-interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from verl_frontier.arguments import savefig_atomic

    validate_results(payload)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    panels = (("prompts", "distinct prompts seen", 1.0), ("wall_s", "training wall time (min)", 60.0))
    for ax, (x_key, label, scale) in zip(axes, panels):
        for index, (name, arm) in enumerate(payload["arms"].items()):
            color = f"C{index}"
            curves = [run["curve"] for run in arm["runs"].values() if run["curve"]]
            if curves:
                rows = _mean_band(curves, x_key)
                xs = [r[0] / scale for r in rows]
                ax.plot(xs, [r[1] for r in rows], color=color, linewidth=2, marker="o", markersize=3,
                        label=f"{name} (mean of {len(curves)} seeds)")  # fmt: skip
                ax.fill_between(xs, [r[2] for r in rows], [r[3] for r in rows], color=color, alpha=0.2, linewidth=0)
                end = xs[-1] if xs else 0.0
            else:
                end = 0.0
            acc = arm["final_accuracy"]
            low, high = (acc["mean"], acc["mean"]) if acc["low"] is None else (acc["low"], acc["high"])
            ax.errorbar([end], [acc["mean"]], yerr=[[acc["mean"] - low], [high - acc["mean"]]],
                        color=color, marker="D", capsize=4, linestyle="none")  # fmt: skip
        ax.axhline(payload["initial_accuracy"], color="0.5", linestyle=":", linewidth=1)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("greedy accuracy")
    axes[0].legend(fontsize=8)
    caption = (f"lines: {payload['selection_set']['path']} during training (band: min-max over seeds); "
               f"diamonds: {payload['final_set']['path']} ({payload['final_set']['n_problems']}) after, 95 % CI; "
               "dotted: base student")  # fmt: skip
    fig.suptitle(title or f"{payload['study']}: {payload['budget']['description']} per arm")
    fig.text(0.5, 0.01, caption, ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    saved = savefig_atomic(fig, path, dpi=120)
    plt.close(fig)
    return saved
