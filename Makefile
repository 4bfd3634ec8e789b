# The two set-up commands of the README: `make demo` and `make test`.
# Both build the virtual environment from nothing. torch is pinned first so that
# pip takes the CPU wheel instead of pulling the CUDA stack.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.genesel-installed

.PHONY: env test test-slow demo lint clean

env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[workflow,test,lint]'
	touch $(STAMP)

# The default suite leaves out the tests marked slow (the README tour, the end-to-end
# workflow runs, whole-compendium selections); `test-slow` runs just those, and CI runs both.
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests

# The workflow's jobs call `genesel`, so the venv's bin goes first on PATH.
demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/snakemake --profile profiles/local --configfile config/config.yaml
	@echo "Report: results/demo/report/index.html"

# Code hygiene, as CI runs it: ruff's lint rules and formatting, mypy on the package, and
# Snakemake's own linter on the workflow (settings in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/snakemake --lint --configfile config/config.yaml

clean:
	rm -rf results .snakemake
