# The README's commands. Each one creates or refreshes .venv and installs what it needs;
# dlkernels itself is rebuilt only when its sources change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
# torch is pinned here: an unpinned install pulls several GB of CUDA wheels.
CONSTRAINTS := -c constraints.txt
SOURCES := meson.build pyproject.toml $(shell find dlkernels -type f ! -name '*.pyc' ! -path '*/__pycache__/*')
STAMPS := $(VENV)/.stamps

.PHONY: demo test test-all bench docs clean

demo: $(STAMPS)/demo
	$(BIN)/dlkernels demo

test: $(STAMPS)/test
	$(BIN)/pytest

test-all: $(STAMPS)/test
	$(BIN)/pytest -m ""

bench: $(STAMPS)/bench
	cd bench && ../$(BIN)/asv machine --yes >/dev/null && \
	  ../$(BIN)/asv run --python=same --quick --show-stderr --set-commit-hash $$(git rev-parse HEAD)

docs: $(STAMPS)/docs
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# One stamp per set of extras; each reinstalls dlkernels when a source file changed.
$(STAMPS)/core: $(BIN)/python $(SOURCES) constraints.txt
	$(PIP) install -q $(CONSTRAINTS) .
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/%: $(BIN)/python $(SOURCES) constraints.txt
	$(PIP) install -q $(CONSTRAINTS) '.[$*,torch]'
	mkdir -p $(STAMPS) && touch $@ $(STAMPS)/core

clean:
	rm -rf $(VENV) build dist docs/_build docs/api/generated bench/.asv bench/results bench/html
