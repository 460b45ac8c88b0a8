"""ORBIT: multi-task, multi-episode meta-RL for in-context online learning in text games
(arXiv 2602.04089). Pure-Python environments (``envs``), the multi-episode trial (``multi_episode``),
data preparation (``data``); the verl agent loop lives in ``agent_loop`` and is registered by
``verl_plugin`` (the only modules that import verl)."""
