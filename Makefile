# digitexp: `make demo` and `make test` each work alone on a fresh machine (they install first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := dev,svhn,fast,queue
DATA ?= data/synth
DEMO_SPEC ?= ablations/anchors.py

.PHONY: install demo test test-fast report ui lint format bench data clean-store gpu-wheels gpu-check gpu-dry-run

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

$(DATA)/train.json: | $(STAMP)
	$(BIN)/python -m digitexp data synth --out $(DATA) --train 1500 --valid 300 --test 300 --seed 0

data: $(DATA)/train.json

demo: install data
	$(BIN)/python -m digitexp run $(DEMO_SPEC) --preset demo --data $(DATA)
	$(BIN)/python -m digitexp report

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

report: install
	$(BIN)/python -m digitexp report

ui: install
	$(BIN)/python -m digitexp ui

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/run_all.py

# The GPU kit (benchmarks/results/README.md): wheels here, the check on a lent GPU machine.
gpu-wheels:
	bash benchmarks/gpu_check.sh prepare

gpu-check:
	bash benchmarks/gpu_check.sh

gpu-dry-run: install
	$(BIN)/python -m benchmarks.gpu.check --dry-run --device cpu
