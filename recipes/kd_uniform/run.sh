#!/usr/bin/env bash
# kd_uniform on this node through the shared launcher (`frontier launch --help`): [launch options] [Hydra overrides].
CONFIG_NAME="${CONFIG_NAME:-kd_uniform}"
exec frontier launch "$(cd "$(dirname "$0")" && pwd)" --config-name "$CONFIG_NAME" --mode local "$@"
