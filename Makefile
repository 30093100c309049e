# Two set-up commands for a fresh machine: `make demo` and `make test`.
# Each bootstraps .venv by itself (and reinstalls when the package metadata changes).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test sync nbtest pytest install clean bench

$(STAMP): settings.ini setup.py pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/multifit demo

# notebooks and library must not drift: exporting and cleaning must leave git clean
sync: $(STAMP)
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	@if [ -n "$$(git status --porcelain -- nbs multifit_fastai)" ]; then \
	  echo "ERROR: notebooks and library are out of sync (run nbdev-export and nbdev-clean, then commit):"; \
	  git status --porcelain -- nbs multifit_fastai; exit 1; fi
	@echo "sync check: notebooks and library agree"

nbtest: $(STAMP)
	$(BIN)/nbdev-test --n-workers 2

pytest: $(STAMP)
	$(BIN)/python -m pytest tests -n 2 --dist loadfile

test: sync nbtest pytest

bench: $(STAMP)
	$(BIN)/python bench/tokenizer.py

clean:
	rm -rf $(VENV) build *.egg-info
