# verl-frontier developer targets. Every target that runs code creates/updates .venv first.
#   make demo   - set up .venv and run the CPU demo
#   make test   - set up .venv and run the whole test suite (incl. e2e runs of verl on CPU)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.frontier-installed
# CPU torch first, so the dependency resolver never pulls a CUDA build. This machine has the +cpu wheel
# in pip's find-links; elsewhere use e.g.  make venv TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help venv test test-fast test-resume demo lint format world bench reproduce reproduce-paced reproduce-ace reproduce-opsdc reproduce-slm reproduce-essence reproduce-orbit reproduce-kd-uniform reproduce-grpo reproduce-gkd clean-venv

help:
	@echo "targets: venv test test-fast test-resume demo lint format world bench reproduce"

venv: $(STAMP)

$(STAMP): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	$(PIP) install -e '.[dev]' --config-settings editable_mode=compat  # compat: Hydra must find hydra_plugins/ on sys.path
	touch $@

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -q -m "not e2e" $(PYTEST_ARGS)

# every method's resume check (4 straight steps vs 2 + resume + 2); CI runs only OPSDC's and ASGLD's
test-resume: venv
	FRONTIER_E2E_RESUME_ALL=1 $(PY) -m pytest -q -m e2e -k resume $(PYTEST_ARGS)

demo: venv
	$(PY) -m verl_frontier.demo

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

world: venv
	$(PY) -m verl_frontier.tinyworld build

bench: venv
	$(PY) benchmarks/verl_cpu_startup.py

# Long science runs (tens of minutes each on 2 cores; not part of CI). Each is resumable.
reproduce: reproduce-paced reproduce-ace reproduce-opsdc reproduce-slm reproduce-essence reproduce-orbit reproduce-kd-uniform reproduce-grpo reproduce-gkd

reproduce-paced: venv
	$(PY) recipes/paced_distill/reproduce.py

reproduce-ace: venv
	$(PY) recipes/ace_grpo/reproduce.py

reproduce-opsdc: venv
	$(PY) recipes/opsdc/reproduce.py

reproduce-slm: venv
	$(PY) recipes/slm_compress/reproduce.py

reproduce-essence: venv
	$(PY) recipes/essence/reproduce.py

reproduce-orbit: venv
	$(PY) recipes/orbit/reproduce.py

reproduce-kd-uniform: venv
	$(PY) recipes/kd_uniform/reproduce.py

reproduce-grpo: venv
	$(PY) recipes/grpo_baseline/reproduce.py

clean-venv:
	rm -rf $(VENV)

reproduce-gkd: venv
	$(PY) recipes/gkd_mix/reproduce.py
