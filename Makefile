# elfvector: `make demo` runs the seed's example end to end, `make test` the tests,
# `make bench` the benchmark.  Everything runs from a venv in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: all demo test bench clean

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

bench: $(VENV)/.installed
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python bench/bench.py

clean:
	rm -rf $(VENV) demo/out bench/work *.egg-info
