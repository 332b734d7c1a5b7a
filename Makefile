# Two entry points (see README): `make demo` and `make test`.
# Both create .venv from scratch when it is missing and install the package into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.headstart-installed
# Keep caches of torch/matplotlib inside the project, never in the user's home.
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export TORCHINDUCTOR_CACHE_DIR := $(CURDIR)/.cache/torchinductor

.PHONY: setup demo test browser docs
setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/headstart demo

# The documentation site into .cache/site (the test suite builds it too, strictly: tests/test_docs.py).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The report tests open pages in Debian's Chromium (headless). Installed from the system packages when missing
# and this is root (as on CI); elsewhere those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; }; } || \
	  echo "chromium is not installed (apt-get install chromium): the browser tests will skip"

# The layer contracts (pyproject.toml, [tool.importlinter]) first: a broken layer fails the suite.
# pytest exits 5 when it collected no test: that is a broken suite, not a pass. The 15 slowest tests are listed at
# the end: CI has a 20-minute budget, and they are where to look when it runs short.
# One pytest worker per core (pytest-xdist), a test file kept on one worker (`loadfile`: a module's fixtures, such
# as the docs site, are built once), one math thread per worker: the tests are small, and two workers on one
# thread each took 0.70-0.85x the wall time of one process on two threads (docs/benchmarks.md, "CI time").
TEST_WORKERS ?= 2
test: setup browser
	$(BIN)/lint-imports
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile --durations=15; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc
