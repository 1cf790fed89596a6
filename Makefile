# jetfleet — the README's two commands are `make demo` and `make test`; both create .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench gpu-check lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 is the CPU build (local disk here); see pyproject's `torch` extra. `fast`: the planner's numba kernel.
	$(PY) -m pip install -q -e '.[dev,torch,fast]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jetfleet demo

test: $(STAMP)
	$(PY) -m pytest -q --durations=25

# The inner loop: no Ray cluster, no notebooks or long simulations (markers in pyproject.toml); under a minute.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not ray and not slow"

bench: $(STAMP)
	$(PY) -m benchmarks

# TensorRT on this machine's CUDA GPU vs the cost model -> docs/hardware/; without a GPU it says so and exits 0.
gpu-check: $(STAMP)
	$(PY) -m benchmarks.gpu_check

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) benchmarks/out .pytest_cache
