"""Run a verl agent loop outside verl's AgentLoopWorker (verl 0.9.1): the ORBIT warm start renders scripted
trials through the real ``OrbitAgentLoop``, and the tests drive agent loops against fake servers."""

from __future__ import annotations


def standalone_agent_loop(cls, server, tokenizer, trainer_config: dict, hf_model_type: str = "qwen2"):
    """An instance of agent loop ``cls`` talking to ``server`` (anything with verl's async ``generate``).
    ``trainer_config``: the trainer config keys the loop reads, e.g. ``actor_rollout_ref.rollout.prompt_length``.
    Build it inside the running event loop: ``AgentLoopBase`` captures it."""
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap

    return cls(
        trainer_config=DictConfigWrap(OmegaConf.create(trainer_config)),
        server_manager=server,
        tokenizer=tokenizer,
        processor=None,
        dataset_cls=None,
        data_config=DictConfigWrap(OmegaConf.create({})),
        hf_model_type=hf_model_type,
    )
