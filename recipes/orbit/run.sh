#!/usr/bin/env bash
# Single-node launch of the orbit recipe with verl's own trainer.
#
#   bash recipes/orbit/run.sh data.train_files=~/data/orbit/train.parquet data.val_files=~/data/orbit/test.parquet
#   bash recipes/orbit/run.sh --config-name orbit_tiny +platform=cpu   # tiny world on CPU
#
# Extra arguments are Hydra overrides, passed to `python -m verl.trainer.main_ppo` unchanged.
set -euo pipefail

RECIPE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"   # absolute: Hydra resolves a relative
CONFIG_NAME="${CONFIG_NAME:-orbit}"                                  # --config-path against verl's package
PYTHON="${PYTHON:-python}"

# Fail fast when a plugin registration is missing (verl swallows entry-point import errors).
frontier check --quiet

exec "$PYTHON" -m verl.trainer.main_ppo --config-path "$RECIPE_DIR" --config-name "$CONFIG_NAME" "$@"
