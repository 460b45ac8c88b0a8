"""verl-frontier: verl 0.9.1 recipe plugin (Paced, OPSDC, ACE, ORBIT) plus verl-on-CPU."""

from setuptools import find_packages, setup

setup(
    name="verl-frontier",
    version="0.1.0",
    description="verl recipe plugin for LLM post-training research, with a CPU platform for verl",
    python_requires=">=3.10,<3.13",
    # verl_frontier_hooks: the import hooks both packages use (verl_cpu must not need verl_frontier)
    packages=find_packages(include=["verl_frontier", "verl_frontier.*", "verl_cpu*", "verl_frontier_hooks"])
    + ["hydra_plugins.verl_frontier_searchpath"],
    include_package_data=True,
    package_data={"verl_cpu": ["config/**/*.yaml"], "verl_frontier": ["**/*.yaml", "**/*.txt", "launch/*.sh"]},
    install_requires=[
        # torch is deliberately not pinned: clusters bring their own; `make venv` installs the CPU wheel first.
        "verl==0.9.1",
        # pieces verl's v1 trainer imports but does not declare in its base requirements
        "TransferQueue==0.1.11",
        "cachetools",
        "uvicorn",
        "fastapi",
        "pyzmq",
        "msgspec",
        "mathruler",
        "qwen_vl_utils",
        "nvtx",
        "transformers>=5.5.3,<5.11,!=5.6.0",
        "tokenizers",
        "datasets",
        "pyarrow",
        "pandas",
        "math-verify",
        "hydra-core",
        "typer",
        "tqdm",
        "rich",
        "matplotlib",
        "tensorboard",
        "psutil",
    ],
    extras_require={
        "dev": ["pytest", "pytest-asyncio", "hypothesis", "ruff"],
        # verl_frontier.slm_compress weight-only quantization; not in "dev": once installed, torchao logs load
        # warnings into every process that imports transformers (the quantization tests skip without it)
        "compress": ["torchao>=0.15"],
        "gpu": ["vllm", "flash-attn"],
    },
    entry_points={
        "console_scripts": ["frontier=verl_frontier.cli:main"],
        "verl.plugins": [
            "verl_cpu = verl_cpu.plugin",
            "verl_frontier = verl_frontier.plugin",
        ],
    },
)
