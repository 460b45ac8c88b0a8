#!/usr/bin/env bash
# gkd_mix on this node through the shared launcher (`frontier launch --help`): [launch options] [Hydra overrides].
CONFIG_NAME="${CONFIG_NAME:-gkd_mix}"
exec frontier launch "$(cd "$(dirname "$0")" && pwd)" --config-name "$CONFIG_NAME" --mode local "$@"
