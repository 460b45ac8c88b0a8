#!/usr/bin/env bash
# Submit gkd_mix to SLURM through the shared launcher (`frontier launch --help`). Run it with bash, not sbatch
# (the launcher writes the job script and calls sbatch): bash slurm.sh [--partition P --nodes N ...] [Hydra overrides].
CONFIG_NAME="${CONFIG_NAME:-gkd_mix}"
exec frontier launch "$(cd "$(dirname "$0")" && pwd)" --config-name "$CONFIG_NAME" --mode slurm "$@"
