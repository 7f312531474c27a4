# raspsynth: `make demo`, `make test`, `make bench` all set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
SHARED ?= ../shared

.PHONY: setup demo test test-slow bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: a plain `torch` requirement would pull the CUDA build.
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m raspsynth.cli demo

test: setup
	RASPSYNTH_SHARED=$(SHARED) $(PY) -m pytest -q

test-slow: setup
	RASPSYNTH_SHARED=$(SHARED) $(PY) -m pytest -q -m slow

bench: setup
	$(PY) experiments/bench_bridge.py

lint: setup
	$(VENV)/bin/ruff check raspsynth tests experiments
	$(VENV)/bin/ruff format --check raspsynth tests experiments

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
