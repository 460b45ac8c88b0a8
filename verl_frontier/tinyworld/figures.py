"""Human-readable build figures (no heavy imports: used by `frontier world info`)."""

from __future__ import annotations


def format_figures(manifest: dict) -> str:
    f = manifest.get("figures", {})
    version = manifest.get("versions", {}).get("world_version")
    lines = [f"world size={manifest.get('size')} seed={manifest.get('seed')} version={version}"]
    tm = f.get("timings", {})
    if tm:
        lines.append("timings: " + ", ".join(f"{k}={v}" for k, v in tm.items()))
    for role in ("teacher", "student"):
        r = f.get(role)
        if not r:
            continue
        s = (
            f"{role}: params={r['params']:,} steps={r['steps']} train={r['train_seconds']}s "
            f"greedy_acc={r['greedy_acc']} by_k={r['greedy_acc_by_operands']} "
            f"concise_len={r['concise_mean_response_tokens']}"
        )
        if "verbose_greedy_acc" in r:
            s += (
                f" verbose_acc={r['verbose_greedy_acc']} verbose_len={r['verbose_mean_response_tokens']}"
                f" verbose_recheck={r['verbose_recheck_rate']} concise_recheck={r['concise_recheck_rate']}"
            )
        if "frac_pass_rate_mixed" in r:
            s += (
                f" n={r['sampled_n']} mean_pass={r['sampled_mean_pass_rate']}"
                f" frac(0<p<1)={r['frac_pass_rate_mixed']} frac(p=0)={r['frac_pass_rate_0']}"
                f" frac(p=1)={r['frac_pass_rate_1']}"
            )
        lines.append(s)
    for k, v in f.get("targets", {}).items():
        lines.append(f"target {k}: {v['value']} {'met' if v['met'] else 'MISSED'}")
    return "\n".join(lines)
