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

# notebooks and library must not drift: exporting and cleaning must change no file under nbs/ or multifit_fastai/
SNAP = find nbs multifit_fastai -type f -not -path '*/__pycache__/*' -not -path '*/.ipynb_checkpoints/*' | LC_ALL=C sort | xargs sha256sum
sync: $(STAMP)
	@$(SNAP) > .sync-before
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	@$(SNAP) > .sync-after
	@if ! cmp -s .sync-before .sync-after; then \
	  echo "ERROR: notebooks and library are out of sync; nbdev-export/nbdev-clean changed:"; \
	  diff .sync-before .sync-after | grep '^>' | awk '{print "  " $$3}'; rm -f .sync-before .sync-after; exit 1; fi
	@rm -f .sync-before .sync-after
	@echo "sync check: notebooks and library agree"

nbtest: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2

pytest: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -n 2 --dist loadfile

test: sync nbtest pytest

bench: $(STAMP)
	$(BIN)/python bench/tokenizer.py

clean:
	rm -rf $(VENV) build *.egg-info
