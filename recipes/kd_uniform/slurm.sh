#!/usr/bin/env bash
# Submit kd_uniform to SLURM through the shared launcher (`frontier launch --help`): [--nodes N ...] [Hydra overrides].
CONFIG_NAME="${CONFIG_NAME:-kd_uniform}"
exec frontier launch "$(cd "$(dirname "$0")" && pwd)" --config-name "$CONFIG_NAME" --mode slurm "$@"
