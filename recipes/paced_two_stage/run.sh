#!/usr/bin/env bash
# Single-node launch of the paced_two_stage recipe with verl's own trainer.
#
#   bash recipes/paced_two_stage/run.sh data.train_files=/data/gsm8k/train.parquet data.val_files=/data/gsm8k/test.parquet
#   bash recipes/paced_two_stage/run.sh ... +platform=cpu        # verl on CPU (tiny models only)
#
# Extra arguments are Hydra overrides, passed to `python -m verl.trainer.main_ppo` unchanged.
set -euo pipefail

RECIPE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"   # absolute: Hydra resolves a relative
CONFIG_NAME="${CONFIG_NAME:-paced_two_stage}"                                  # --config-path against verl's package
PYTHON="${PYTHON:-python}"

# Fail fast when a plugin registration is missing (verl swallows entry-point import errors).
frontier check --quiet

exec "$PYTHON" -m verl.trainer.main_ppo --config-path "$RECIPE_DIR" --config-name "$CONFIG_NAME" "$@"
