#!/usr/bin/env bash
# Submit opd_uniform to SLURM through the shared launcher (`frontier launch --help`): [--nodes N ...] [Hydra overrides].
CONFIG_NAME="${CONFIG_NAME:-opd_uniform}"
exec frontier launch "$(cd "$(dirname "$0")" && pwd)" --config-name "$CONFIG_NAME" --mode slurm "$@"
