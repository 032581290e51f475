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

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e '.[train,dev]'
	touch $@ $(VENV)/.installed $(VENV)/.installed-train

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Training needs PyTorch: the demo installs the train extra (the CPU wheel pinned below when it is on disk).
$(VENV)/.installed-train: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e '.[train]'
	touch $@ $(VENV)/.installed

# The main job end to end on the simulator: record -> validate -> tensors -> train a tiny model -> run it.
demo: $(VENV)/.installed-train
	@rm -rf sessions/demo outputs/demo
	$(BIN)/vrcap record --session demo --root sessions --source sim --duration 10
	$(BIN)/vrcap validate sessions/demo
	$(BIN)/vrcap info sessions/demo
	$(BIN)/vrcap replay sessions/demo --to-tensors outputs/demo/tensors
	$(BIN)/vrcap train --config configs/train/tiny.yaml --data outputs/demo/tensors --out outputs/demo/train --max-steps 30
	$(BIN)/vrcap infer --checkpoint outputs/demo/train/checkpoints/final.pt --session sessions/demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python tools/bench/format.py
	$(BIN)/python tools/bench/replay.py
	$(BIN)/python tools/bench/train.py
	$(BIN)/python tools/bench/server.py --seconds 20

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache outputs/demo sessions/demo
