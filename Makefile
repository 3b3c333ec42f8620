# The two set-up commands of the README. Each creates .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch 2.13.0 is the CPU wheel the project's machines carry; the extra's range accepts it.
	$(BIN)/pip install -q "torch==2.13.0" || true
	$(BIN)/pip install -q -e ".[torch,dev,umap,tensorboard]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jaxnets demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

lint: $(STAMP)
	$(BIN)/ruff check jaxnets converters tests scripts

bench: $(STAMP)
	$(BIN)/python scripts/bench_models.py

clean:
	rm -rf $(VENV) runs .pytest_cache
