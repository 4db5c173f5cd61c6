# elfvector: `make demo` runs the seed's example end to end, `make test` the tests,
# `make fuzz` every command on every fuzz input (a subset runs in `make test`;
# FUZZ_ARGS="--only INPUT --command CMD" reruns one case), `make bench` the
# benchmark (exit 1 when a target of a landed issue is missed).  Everything runs
# from a venv in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: all demo test fuzz bench clean

all: test

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	PATH=$(abspath $(BIN)):$$PATH PYTHONPATH=$(CURDIR) demo/demo.sh

test: $(VENV)/.installed
	$(BIN)/pytest -q

fuzz: $(VENV)/.installed
	cd tests && ../$(BIN)/python -m fuzz $(FUZZ_ARGS)

bench: $(VENV)/.installed
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python bench/bench.py

clean:
	rm -rf $(VENV) demo/out bench/work *.egg-info
