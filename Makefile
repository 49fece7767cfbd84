# The two commands: `make demo` (the main job) and `make test` (lint + the test suite).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint browser app judge shapes-eval clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,app]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/tessera demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint browser
	$(VENV)/bin/pytest

# The app's test drives a real headless Chromium: Debian's chromium and chromium-driver, installed when missing
# (as root; otherwise that one test is skipped and says why).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { [ "$$(id -u)" = 0 ] && \
		apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
		>/dev/null; } || echo "no chromium: the browser test will be skipped (install chromium chromium-driver)"

# The web app on the demo's checkpoint (after `make demo`), and the unified model's when there is one.
app: setup
	@test -d runs/demo/model/checkpoint || { echo "no runs/demo/model/checkpoint: run make demo first"; exit 2; }
	$(VENV)/bin/tessera app $(foreach c,$(wildcard runs/demo/rl/checkpoint runs/demo/model/checkpoint runs/unified/introspect-rl/checkpoint runs/unified/introspect/checkpoint runs/unified/unified/checkpoint runs/unified/sft/checkpoint),--ckpt $(c))

# Rebuild the versioned package data (judge weights, ShapesEval prompts) from their seeded scripts.
judge: setup
	$(VENV)/bin/tessera judge train --out runs/judge --fresh
	cp runs/judge/checkpoint/config.yaml runs/judge/checkpoint/model.safetensors runs/judge/checkpoint/state.json tessera/eval/data/judge/

shapes-eval: setup
	$(PY) scripts/make_shapes_eval.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
