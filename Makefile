# Jack build plumbing. `make run` / `make test` bootstrap .venv/ on a machine
# that has only python3 and make.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Touched after a successful install; reinstalls when the sources change.
STAMP  := $(VENV)/.installed

# Extra arguments: `make run ARGS="--grpc-port 50052"`, `make test TESTS=jackd.test.test_x`.
ARGS  ?=
TESTS ?= jackd

export BUF_CACHE_DIR := $(CURDIR)/.buf-cache

SOURCES := setup.py $(wildcard jack/*.py twisted/plugins/*.py) \
           $(shell find jackd -name '*.py' 2>/dev/null)

PROTOS := $(sort $(wildcard proto/jack/*.proto))

.PHONY: venv install-tools generate build run test lint breaking bench clean

# Internal: an empty virtualenv with a current pip.
venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# A regular (not editable) install: with current setuptools `pip install -e .`
# hides twisted/plugins/ from twistd. Stale setuptools build/ output would be
# installed too, so it goes first. The plugin cache is rebuilt from outside the
# tree so that only the installed twisted/plugins/ is scanned.
$(STAMP): $(BIN)/python $(SOURCES)
	rm -rf build *.egg-info
	$(BIN)/python -m pip install '.[dev]'
	cd $(VENV) && bin/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $@

# Installs Jack with the pinned dev tools (grpcio-tools, buf) into .venv/.
install-tools: $(STAMP)

build: $(STAMP)

# Regenerates jack/*_pb2*.py[i] from proto/ (grpcio-tools pinned in setup.py).
generate: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

run: $(STAMP)
	$(BIN)/twistd -n --pidfile= jack $(ARGS)

test: $(STAMP)
	$(BIN)/trial --reactor=asyncio $(TESTS)

lint: $(STAMP)
	$(BIN)/buf lint

# Against main (or main~1 on main itself); see tools/buf-breaking.sh.
breaking: $(STAMP)
	BUF=$(BIN)/buf tools/buf-breaking.sh

# Benchmarks (bench/, results in bench/results/): Jack's enqueue path against
# gRPC echo servers, Celery and RQ (`make bench ARGS="--reps 5"`; `python -m
# bench --help`), then, when bench/schedule.py is there, scheduling
# timeliness (`SCHEDULE_ARGS="--store sqlite"`). The bench extra adds what the
# dev install lacks (py-spy).
BENCH_STAMP   := $(VENV)/.installed-bench
SCHEDULE_ARGS ?=

$(BENCH_STAMP): $(STAMP)
	rm -rf build *.egg-info
	$(BIN)/python -m pip install '.[dev,bench]'
	cd $(VENV) && bin/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(ARGS)
	if [ -f bench/schedule.py ]; then $(BIN)/python -m bench.schedule $(SCHEDULE_ARGS); fi

clean:
	rm -rf $(VENV) build dist *.egg-info .buf-cache _trial_temp* twisted/plugins/dropin.cache
	find jack jackd twisted -name __pycache__ -type d -prune -exec rm -rf {} +
