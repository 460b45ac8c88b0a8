#!/usr/bin/env bash
# Written by `frontier launch --mode slurm` from verl_frontier/launch/sbatch_template.sh; submitted with sbatch.
# Recipe @@RECIPE@@: a Ray head and one Ray node per extra SLURM node, each an `srun` job step (so `scancel` and
# the end of the job stop them), a registration check on every node, then verl's trainer on the head node.
@@SBATCH@@
set -euo pipefail
@@SETUP@@
@@EXPORTS@@
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 RAY_DEDUP_LOGS=0 PYTHONUNBUFFERED=1
PYTHON=@@PYTHON@@
RAY_TMP="/tmp/ray-fl-$SLURM_JOB_ID"  # this job's Ray only; short (Ray's socket paths are limited)

mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
HEAD="${NODES[0]}"
on() { srun --nodes=1 --ntasks=1 --overlap -w "$@"; }
HEAD_IP="$(on "$HEAD" hostname -I | awk '{print $1}')"
RAY_PORT="$(on "$HEAD" "$PYTHON" -m verl_frontier.launch.raynode --free-port)"
export RAY_ADDRESS="$HEAD_IP:$RAY_PORT"
echo "[frontier launch] job $SLURM_JOB_ID nodes=${NODES[*]} head=$HEAD ray=$RAY_ADDRESS temp_dir=$RAY_TMP"

# verl swallows plugin import errors: check the registrations on every node before anything starts
srun --nodes="$SLURM_NNODES" --ntasks="$SLURM_NNODES" --ntasks-per-node=1 --overlap "$PYTHON" -m verl_frontier.cli check --quiet

RAY_STEPS=()
stop_ray() {  # SIGTERM to each Ray job step (its `ray start --block` stops that node); never `ray stop`
    for pid in "${RAY_STEPS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait || true
}
trap stop_ray EXIT
on "$HEAD" "$PYTHON" -m verl_frontier.launch.raynode --head --port "$RAY_PORT" --node-ip "$HEAD_IP" \
    --temp-dir "$RAY_TMP"@@RAY_RESOURCES@@ &
RAY_STEPS+=("$!")
for node in "${NODES[@]:1}"; do
    on "$node" "$PYTHON" -m verl_frontier.launch.raynode --address "$RAY_ADDRESS" --temp-dir "$RAY_TMP"@@RAY_RESOURCES@@ &
    RAY_STEPS+=("$!")
done

# every node joined, and the plugin registrations reach a Ray worker on each of them
on "$HEAD" "$PYTHON" -m verl_frontier.launch.node_check --address "$RAY_ADDRESS" --nodes "$SLURM_NNODES" --timeout 300

on "$HEAD" @@TRAINER@@
