#!/usr/bin/env bash
# Submit essence to SLURM through the shared launcher (`frontier launch --help`): [--nodes N ...] [Hydra overrides].
CONFIG_NAME="${CONFIG_NAME:-essence}"
exec frontier launch "$(cd "$(dirname "$0")" && pwd)" --config-name "$CONFIG_NAME" --mode slurm "$@"
