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

# The test suite also covers the TransformerLens path (extra `tl`); `make demo` needs no extra.
$(VENV)/.installed-tl: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[dev,tl]"
	touch $@

$(VENV)/.installed-browser: $(VENV)/.installed-tl
	$(PY) -m pip install --quiet -e ".[dev,tl,browser]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m raspsynth.cli demo

test: $(VENV)/.installed-tl
	RASPSYNTH_SHARED=$(SHARED) $(PY) -m pytest -q

# The browser test needs a Chromium on PATH (Debian: apt-get install chromium).
test-slow: $(VENV)/.installed-browser
	RASPSYNTH_SHARED=$(SHARED) $(PY) -m pytest -q -m slow

bench: setup
	$(PY) experiments/bench_bridge.py

lint: setup
	$(VENV)/bin/ruff check raspsynth tests experiments
	$(VENV)/bin/ruff format --check raspsynth tests experiments

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
