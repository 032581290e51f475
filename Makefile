# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv idempotently.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned for tests: this machine (and CI) has the CPU wheel of 2.13.0 on disk; users get torch>=2.4.
TORCH_PIN := torch==2.13.0

.PHONY: demo test lint format install install-dev clean bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A stamp per install flavour: re-running is a no-op unless pyproject.toml changed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# tools/ci/test-constraints.txt pins the few packages whose ranges make pip's resolver search for many minutes.
$(VENV)/.installed-dev: pyproject.toml tools/ci/test-constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -c tools/ci/test-constraints.txt -e '.[train,dev]'
	touch $@ $(VENV)/.installed $(VENV)/.installed-train

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Training needs PyTorch: the demo installs the train extra (the CPU wheel pinned below when it is on disk).
$(VENV)/.installed-train: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e '.[train]'
	touch $@ $(VENV)/.installed

# The main job end to end on the simulator: record -> validate -> tensors -> train a tiny model -> run it ->
# evaluate it on the held-out test block beside the baselines (honest numbers, whatever they are).
demo: $(VENV)/.installed-train
	@rm -rf sessions/demo outputs/demo
	$(BIN)/vrcap record --session demo --root sessions --source sim --duration 10
	$(BIN)/vrcap validate sessions/demo
	$(BIN)/vrcap info sessions/demo
	$(BIN)/vrcap replay sessions/demo --to-tensors outputs/demo/tensors
	$(BIN)/vrcap train --config tiny --data outputs/demo/tensors --out outputs/demo/train --max-steps 100 eval_interval=50
	$(BIN)/vrcap infer --checkpoint outputs/demo/train/checkpoints/best.pt --session sessions/demo
	$(BIN)/vrcap eval --checkpoint outputs/demo/train/checkpoints/best.pt --data outputs/demo/tensors --split test

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Two phases (tools/ci/run-tests.sh): untimed tests on every core, then the realtime ones alone. The Monado
# chroot starts building first, in the background, so it overlaps setting up .venv.
# `$(BIN)/python -m pytest` runs everything in one process.
test:
	@bash tools/ci/run-tests.sh --start-build
	@$(MAKE) --no-print-directory lint
	bash tools/ci/run-tests.sh $(BIN)/python

bench: $(VENV)/.installed-dev
	$(BIN)/python tools/bench/format.py
	$(BIN)/python tools/bench/replay.py
	$(BIN)/python tools/bench/train.py
	$(BIN)/python tools/bench/server.py --seconds 20

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache outputs/demo sessions/demo
