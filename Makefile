# The two commands: `make demo` (the main job) and `make test` (lint + the test suite).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint judge shapes-eval clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/tessera demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/pytest

# Rebuild the versioned package data (judge weights, ShapesEval prompts) from their seeded scripts.
judge: setup
	$(VENV)/bin/tessera judge train --out runs/judge --fresh
	cp runs/judge/checkpoint/config.yaml runs/judge/checkpoint/model.safetensors runs/judge/checkpoint/state.json tessera/eval/data/judge/

shapes-eval: setup
	$(PY) scripts/make_shapes_eval.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
