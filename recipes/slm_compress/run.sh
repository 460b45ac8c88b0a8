#!/usr/bin/env bash
# slm_compress re-distillation on this node through the shared launcher (`frontier launch --help`): [launch options] [Hydra overrides].
CONFIG_NAME="${CONFIG_NAME:-slm_compress}"
exec frontier launch "$(cd "$(dirname "$0")" && pwd)" --config-name "$CONFIG_NAME" --mode local "$@"
