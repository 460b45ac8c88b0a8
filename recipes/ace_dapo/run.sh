#!/usr/bin/env bash
# Single-node launch of the ace_dapo recipe with verl's own trainer.
#
#   bash recipes/ace_dapo/run.sh data.train_files=/data/dapo-math-17k.parquet data.val_files=/data/math500.parquet
#   bash recipes/ace_dapo/run.sh ... +platform=cpu        # verl on CPU (tiny models only)
#
# Extra arguments are Hydra overrides, passed to `python -m verl.trainer.main_ppo` unchanged.
set -euo pipefail

RECIPE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"   # absolute: Hydra resolves a relative
CONFIG_NAME="${CONFIG_NAME:-ace_dapo}"                                  # --config-path against verl's package
PYTHON="${PYTHON:-python}"

# Fail fast when a plugin registration is missing (verl swallows entry-point import errors).
frontier check --quiet

exec "$PYTHON" -m verl.trainer.main_ppo --config-path "$RECIPE_DIR" --config-name "$CONFIG_NAME" "$@"
