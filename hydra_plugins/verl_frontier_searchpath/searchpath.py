"""Hydra search-path plugin: makes `+platform=cpu` (verl_cpu/config/platform/cpu.yaml) and the
verl-frontier config groups available to every Hydra app, `verl.trainer.main_ppo` included."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class VerlFrontierSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="verl-frontier", path="pkg://verl_cpu.config")
