#!/usr/bin/env bash
# Multi-node launch of the orbit recipe on SLURM: one Ray head + one Ray worker per extra node,
# each started as an `srun` job step (so `scancel` tears them down), then verl's trainer on the head.
#
#   sbatch recipes/orbit/slurm.sh data.train_files=$HOME/data/orbit/train.parquet data.val_files=$HOME/data/orbit/test.parquet
#   sbatch --nodes=4 --gpus-per-node=8 recipes/orbit/slurm.sh ...   # sbatch flags override the defaults below
#
# Arguments are Hydra overrides for `python -m verl.trainer.main_ppo`. Environment knobs:
#   RECIPE_DIR      recipe folder (default: the folder this script was submitted from, see below)
#   PYTHON          interpreter with verl-frontier installed (default: python, e.g. from an activated .venv)
#   RAY_PORT        Ray head port (default 6379)
#   GPUS_PER_NODE   trainer.n_gpus_per_node (default: from SLURM_GPUS_ON_NODE / SLURM_GPUS_PER_NODE, else nvidia-smi)
#
#SBATCH --job-name=orbit
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

CONFIG_NAME="${CONFIG_NAME:-orbit}"
PYTHON="${PYTHON:-python}"
RAY_PORT="${RAY_PORT:-6379}"
export RAY_AUTH_MODE=disabled         # Ray >= 2.60 enables token auth by default; the driver would hang
export RAY_DEDUP_LOGS=0

# sbatch runs a spooled copy of this script, so $0 is not in the repository: ask SLURM for the original.
if [[ -z "${RECIPE_DIR:-}" ]]; then
    script_path="$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -n1)"
    if [[ -n "$script_path" && -f "$script_path" ]]; then
        RECIPE_DIR="$(cd "$(dirname "$script_path")" && pwd)"
    else
        RECIPE_DIR="${SLURM_SUBMIT_DIR:-$PWD}/recipes/$CONFIG_NAME"
    fi
fi
[[ -f "$RECIPE_DIR/$CONFIG_NAME.yaml" ]] || { echo "error: $RECIPE_DIR/$CONFIG_NAME.yaml not found; set RECIPE_DIR" >&2; exit 2; }

if [[ -z "${GPUS_PER_NODE:-}" ]]; then
    GPUS_PER_NODE="${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-}}"
    GPUS_PER_NODE="${GPUS_PER_NODE##*:}"   # "a100:8" -> "8"
    if [[ -z "$GPUS_PER_NODE" ]]; then
        if command -v nvidia-smi >/dev/null 2>&1; then GPUS_PER_NODE="$(nvidia-smi -L | wc -l)"; else GPUS_PER_NODE=0; fi
    fi
fi
CPUS_PER_NODE="${SLURM_CPUS_PER_TASK:-$(nproc)}"

mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
HEAD_NODE="${NODES[0]}"
HEAD_IP="$(srun --nodes=1 --ntasks=1 --overlap -w "$HEAD_NODE" hostname -I | awk '{print $1}')"
export RAY_ADDRESS="$HEAD_IP:$RAY_PORT"
echo "[slurm.sh] nodes=${NODES[*]} head=$HEAD_NODE ($RAY_ADDRESS) gpus/node=$GPUS_PER_NODE cpus/node=$CPUS_PER_NODE"

# Registration check on the head node before anything starts.
srun --nodes=1 --ntasks=1 --overlap -w "$HEAD_NODE" frontier check --quiet

STEP_PIDS=()
cleanup() {
    for node in "${NODES[@]}"; do
        srun --nodes=1 --ntasks=1 --overlap -w "$node" "$PYTHON" -m ray.scripts.scripts stop --force >/dev/null 2>&1 || true
    done
    for pid in "${STEP_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait || true
}
trap cleanup EXIT

srun --nodes=1 --ntasks=1 --overlap -w "$HEAD_NODE" \
    "$PYTHON" -m ray.scripts.scripts start --head --node-ip-address="$HEAD_IP" --port="$RAY_PORT" \
    --num-cpus="$CPUS_PER_NODE" --num-gpus="$GPUS_PER_NODE" --block &
STEP_PIDS+=("$!")
sleep 5
for node in "${NODES[@]:1}"; do
    srun --nodes=1 --ntasks=1 --overlap -w "$node" \
        "$PYTHON" -m ray.scripts.scripts start --address="$RAY_ADDRESS" \
        --num-cpus="$CPUS_PER_NODE" --num-gpus="$GPUS_PER_NODE" --block &
    STEP_PIDS+=("$!")
done

# Wait until every node has joined (up to 5 minutes).
for _ in $(seq 1 60); do
    alive="$("$PYTHON" - <<'PY' 2>/dev/null || echo 0
import ray
ray.init(address="auto", logging_level="ERROR")
print(sum(1 for n in ray.nodes() if n["Alive"]))
PY
)"
    [[ "$alive" -ge "${#NODES[@]}" ]] && break
    sleep 5
done
[[ "${alive:-0}" -ge "${#NODES[@]}" ]] || { echo "error: only ${alive:-0}/${#NODES[@]} Ray nodes joined" >&2; exit 1; }

# The driver joins the running cluster through RAY_ADDRESS; ray.init must then get no num_cpus/num_gpus.
srun --nodes=1 --ntasks=1 --overlap -w "$HEAD_NODE" \
    "$PYTHON" -m verl.trainer.main_ppo --config-path "$RECIPE_DIR" --config-name "$CONFIG_NAME" \
    trainer.nnodes="$SLURM_NNODES" trainer.n_gpus_per_node="$GPUS_PER_NODE" \
    ray_kwargs.ray_init.num_cpus=null "$@"
