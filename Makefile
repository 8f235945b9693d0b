# peergrid: `make run` starts the lab testbed, `make test` runs the whole suite.
# Both install what they need (Debian packages with apt-get, Python packages into .venv) and are
# safe to run again: the Python install is redone only when a dependency file changed.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
COMPONENTS := ledger controller edge firmware-sim dso-server
DEPFILES := $(foreach c,$(COMPONENTS),$(c)/pyproject.toml) requirements-dev.txt ansible/requirements.txt
STAMP := $(VENV)/.peergrid-installed
PURE_CORES := ledger/src/peergrid_ledger controller/src/peergrid_controller
# strict too (pyproject's [tool.mypy])
TYPED := $(PURE_CORES) edge/src/peergrid_edge dso-server/src/peergrid_dso firmware-sim/src/peergrid_sim

.PHONY: all setup system-packages run test lint typecheck pytest bench soak clean

all: test

system-packages:
	@scripts/ensure-system-packages

$(STAMP): $(DEPFILES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q $(foreach c,$(COMPONENTS),-e ./$(c)) -r requirements-dev.txt
	@touch $@

setup: system-packages $(STAMP)

# The whole design: six trading MGMCs on the IEEE 33-bus feeder, the DSO node and console, until Ctrl-C.
TESTBED_ARGS ?= --scenario firmware-sim/scenarios/ieee33.yaml
run: setup
	$(BIN)/peergrid-testbed $(TESTBED_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy $(TYPED)

# Three workers on the CI's two cores: half the suite's wall is waiting (labs on accelerated clocks, chains'
# block periods, devices), not CPU - the whole suite used ~1,175 CPU-s against 2 x 1,150 s of wall at -n 2
# (preci18a, session 18).
pytest: setup
	$(BIN)/pytest -n 3 --dist loadgroup --durations=60 $(PYTEST_ARGS)

test: lint typecheck pytest

bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

soak: setup
	PEERGRID_SOAK=1 $(BIN)/pytest -m slow $(PYTEST_ARGS)

# Flash an arm64 stand-in for Raspberry Pi OS with ansible/playbooks/flash.yml, boot it with systemd-nspawn and
# check the edge reaches READY and survives a watchdog timeout (qemu: slow, so not part of `make test`).
.PHONY: test-image
test-image: setup
	tests/ansible/test-image.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
