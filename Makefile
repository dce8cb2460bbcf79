# The front door: make demo, make test, make lint, make bench.
# uv (from PyPI) creates the environment from uv.lock; it is bootstrapped into
# .tools/ when it is not already on PATH.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || echo python3)
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced-stamp
# Bytecode is compiled at install (uv's --compile-bytecode for the dependencies,
# compileall for this project's editable sources): with PYTHONDONTWRITEBYTECODE set,
# or a read-only environment, every process start would otherwise recompile River,
# SciPy and the engine (~2.5 s of CPU measured per start, ~1 s with bytecode).
# uv is given the interpreter's real path: given a wrapper such as a pyenv shim it would
# recreate .venv at every sync (so `make demo` after `make test` dropped the dev tools).
PYTHON_EXE := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null || echo $(PYTHON))
UV_SYNC := $(UV) sync --frozen --compile-bytecode --python $(PYTHON_EXE)
COMPILE_SRC := $(VENV)/bin/python -m compileall -q flows operators models
# `make demo` needs the runtime dependencies only; the dev tools come with test/lint/bench.
# The runtime sync is --inexact: it never removes the dev tools a `make test` installed,
# so the two stamps do not undo each other.
RUNTIME_STAMP := $(VENV)/.synced-runtime-stamp
CHROMIUM ?= /usr/bin/chromium
DEMO_OUT := out/demo

.PHONY: demo live test lint bench clean env report-check readme-figures fast clean-fast

env: $(STAMP)

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): pyproject.toml uv.lock Makefile | $(UV)
	$(UV_SYNC)
	$(COMPILE_SRC)
	@touch $(STAMP)

$(RUNTIME_STAMP): pyproject.toml uv.lock Makefile | $(UV)
	$(UV_SYNC) --no-dev --inexact
	$(COMPILE_SRC)
	@touch $(RUNTIME_STAMP)

demo: $(RUNTIME_STAMP)
	$(VENV)/bin/audienceflow replay examples/stream.jsonl.gz --config examples/demo.yaml --control examples/requests.jsonl --out $(DEMO_OUT)
	$(VENV)/bin/audienceflow report $(DEMO_OUT)

# Renders the demo's report in headless Chromium (Debian's package, installed when
# missing); fails on a script error or an empty chart; saves a screenshot.
report-check: demo
	@test -x $(CHROMIUM) || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(PY) -m audienceflow.flows.report_check $(DEMO_OUT)/report.html $(DEMO_OUT)/report.png

# Rewrites the README's demo figures from a fresh demo run (checked by tests/test_report.py).
readme-figures: demo
	$(PY) examples/readme_figures.py $(DEMO_OUT)/summary.json README.md

# The live path on this machine: broker, Redis, worker, the bundled stream re-timed
# to now, a live view; Ctrl-C stops it all. LIVE_ARGS="--speed 600 --duration 2m".
LIVE_STAMP := $(VENV)/.live-stamp
$(LIVE_STAMP): pyproject.toml uv.lock Makefile | $(UV)
	$(UV_SYNC) --inexact --no-default-groups --group live
	$(COMPILE_SRC)
	@touch $(LIVE_STAMP)

live: $(LIVE_STAMP)
	$(PY) -m audienceflow.flows.live $(LIVE_ARGS)

test: $(STAMP)
	$(PY) -m pytest

# mypy needs the audienceflow.* layout that setuptools maps at install time: mirror it with links.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	rm -rf .lint-src && mkdir -p .lint-src/audienceflow
	for d in flows operators models; do ln -s ../../$$d .lint-src/audienceflow/$$d; done
	cd .lint-src && ../$(VENV)/bin/mypy --strict -p audienceflow.operators -p audienceflow.models

bench: $(STAMP)
	$(PY) bench/run.py

# Optional, never a dependency of another target: compiles the modules listed in
# operators/native.py with mypyc (dev tools; needs a C compiler and the Python headers)
# next to their sources, and stamps their sources' hashes; an import guard runs the
# pure sources instead if any changed (README, "Compiled build (optional)").
fast: $(STAMP)
	$(PY) build_native.py

clean-fast:
	rm -rf build/native operators/native.json operators/*.so models/*.so

clean: clean-fast
	rm -rf out .pytest_cache .mypy_cache
