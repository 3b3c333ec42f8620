# The two set-up commands of the README. Each creates .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The main leg's JAX stack (jax 0.10.2 + torch 2.13); pyproject's ranges are wider.
CONSTRAINTS := constraints/py311.txt

# The second CI leg: Python 3.12, the newest jax/jaxlib/flax/optax/orbax, no torch.
# pyenv's versions first: a pyenv shim for a version that is not selected exists but fails.
PYENV_ROOT ?= $(HOME)/.pyenv
PY312_CANDIDATES := $(wildcard $(PYENV_ROOT)/versions/3.12*/bin/python3.12) $(shell command -v python3.12 2>/dev/null)
ifndef PY312
PY312 := $(firstword $(foreach p,$(PY312_CANDIDATES),$(shell $(p) -c "" 2>/dev/null && echo $(p))))
endif
VENV312 := .venv312
BIN312 := $(VENV312)/bin
STAMP312 := $(VENV312)/.installed

.PHONY: demo test test-py312 lint bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch 2.13.0 is the CPU wheel the project's machines carry; the extra's range accepts it.
	$(BIN)/pip install -q -c $(CONSTRAINTS) "torch==2.13.0" || true
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e ".[torch,dev,umap,tensorboard]"
	touch $(STAMP)

$(STAMP312): pyproject.toml
	@test -n "$(PY312)" || { echo "test-py312: no python3.12 on PATH or under pyenv (set PY312=...)"; exit 1; }
	test -x $(BIN312)/python || $(PY312) -m venv $(VENV312)
	$(BIN312)/pip install -q --upgrade pip
	# --upgrade: the newest JAX stack the ranges admit, also when the venv already exists.
	$(BIN312)/pip install -q --upgrade -e ".[dev,umap,tensorboard]" jax jaxlib flax optax orbax-checkpoint
	touch $(STAMP312)

demo: $(STAMP)
	$(BIN)/jaxnets demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# torch-only tests skip with their reason here.
test-py312: $(STAMP312)
	$(BIN312)/python -c "import jax, jaxlib; print('test-py312: jax', jax.__version__, 'jaxlib', jaxlib.__version__)"
	$(BIN312)/python -m pytest -n 2 --dist loadgroup -q

lint: $(STAMP)
	$(BIN)/ruff check jaxnets converters tests scripts

bench: $(STAMP)
	$(BIN)/python scripts/bench_models.py

clean:
	rm -rf $(VENV) $(VENV312) runs .pytest_cache
