"""Config checks for GKD mixing, run in the driver before Ray starts (see verl_frontier.validation)."""

from __future__ import annotations

import logging
import os

from omegaconf import ListConfig, OmegaConf

from verl_frontier.gkd.config import SECTION, GkdConfig
from verl_frontier.validation import (
    DATA_FILE_KEYS,
    config_error,
    looks_remote,
    register_check,
    register_schema,
    select,
)

logger = logging.getLogger("verl_frontier")

register_schema(SECTION, GkdConfig)

#: = verl_plugin.GKD_AGENT / MIXED_AGENTS (this module does not import verl)
GKD_AGENT = "gkd_mix"
MIXED_AGENTS = ("teacher_replay", GKD_AGENT)


def _train_agent_names(config) -> set[str] | None:
    """The ``agent_name`` values of the local parquet training files (None when they cannot be read here:
    remote, missing, not parquet; the data_files check reports those)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    value = select(config, DATA_FILE_KEYS[0])
    if value is not None and not isinstance(value, str):
        value = list(OmegaConf.to_container(value) if isinstance(value, ListConfig) else value)
    paths = value if isinstance(value, list) else [value]
    names: set[str] = set()
    for path in paths:
        if not isinstance(path, str) or looks_remote(path) or not path.endswith(".parquet"):
            return None
        local = os.path.expanduser(os.path.expandvars(path.removeprefix("file://")))
        if not os.path.isfile(local):
            return None
        try:
            schema = pq.read_schema(local)
            if "agent_name" not in schema.names:
                continue
            column = pq.read_table(local, columns=["agent_name"]).column("agent_name")
        except Exception:  # noqa: BLE001 - unreadable files are the data_files check's to report
            return None
        names.update(str(v) for v in pc.unique(column).to_pylist() if v is not None)
    return names


@register_check(name="gkd")
def check_gkd(config) -> None:
    """``algorithm.gkd`` mixes teacher-replay rows with student samples: it needs the teacher server
    (distillation) and no rollout log-probs (replayed rows have none); training data without rows to mix is
    logged as a warning; rows named ``gkd_mix`` need the section (the driver assigns them)."""
    section = select(config, SECTION)
    names = _train_agent_names(config)
    if section is None:
        if names and GKD_AGENT in names:
            raise config_error(
                SECTION, f"the training data has rows named {GKD_AGENT!r}: set {SECTION} (e.g. lmbda: 0.5)", None
            )
        return
    GkdConfig.from_mapping(section)
    from verl_frontier.verl_patches import verl_supported

    if not verl_supported("gkd"):
        raise config_error(SECTION, "GKD mixing needs its verl wraps, which are not installed for this verl version")
    if not select(config, "distillation.enabled", False):
        raise config_error(
            "distillation.enabled", f"{SECTION} mixes rows that the teacher server scores: enable distillation", False
        )
    if select(config, "actor_rollout_ref.rollout.calculate_log_probs", False):
        raise config_error(
            "actor_rollout_ref.rollout.calculate_log_probs",
            f"{SECTION}: replayed teacher rows have no rollout log-probs, so a mixed batch cannot carry them",
            True,
        )
    if names is not None and not names & set(MIXED_AGENTS):
        # a warning, not an error: the data keys of a recipe are often pointed at other files for a check
        logger.warning(
            "%s: %s mixes rows named %s (rows with extra_info.teacher_response, python -m "
            "verl_frontier.essence.data --agent teacher_replay); the training data has none (agent_name: %s), so "
            "nothing is mixed",
            DATA_FILE_KEYS[0],
            SECTION,
            " or ".join(MIXED_AGENTS),
            sorted(names),
        )
