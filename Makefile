# The two commands of the README: `make quickstart` and `make test` (the
# whole suite, what CI runs); `make test-quick`: the unit tests only, for the
# inner loop (no end-to-end tool runs);
# `make test-gpu` on a GPU machine (tools/test_gpu.sh; PYTHON=... picks the
# Python with CUDA PyTorch, default python3).
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: install install-tests test test-quick quickstart test-gpu gpu-wheels

install:
	bash tools/install.sh

install-tests:
	bash tools/install.sh --tests

# One pytest-xdist worker per core, one OpenMP thread each (most of the
# suite's time is tool processes that run on one thread: serially, one core
# would idle); a test file stays on one worker, so that its module fixtures
# are built once (the slowest files go first: tests/conftest.py's
# SLOW_FIRST; --no-loadscope-reorder keeps that order, which pytest-xdist
# 3.8 otherwise replaces by the number of tests per file). TEST_JOBS=0 runs
# in one process; PYTEST_ARGS adds options, e.g. PYTEST_ARGS=--durations=30.
TEST_JOBS ?= auto
PYTEST_ARGS ?=
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile \
	--no-loadscope-reorder $(PYTEST_ARGS)

test: install-tests
	$(PYTEST) tests

test-quick: install-tests
	$(PYTEST) -m 'not end_to_end' tests

quickstart: install
	$(PY) tools/quickstart.py

test-gpu:
	bash tools/test_gpu.sh

gpu-wheels:
	bash tools/download_gpu_wheels.sh
