# The two commands of the README: `make quickstart` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: install install-tests test quickstart

install:
	bash tools/install.sh

install-tests:
	bash tools/install.sh --tests

test: install-tests
	$(PY) -m pytest -q tests

quickstart: install
	$(PY) tools/quickstart.py
