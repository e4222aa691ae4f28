# Set-up and entry points. torch is pinned and installed first so pip takes the CPU wheel
# instead of resolving an unpinned torch to several GB of CUDA packages.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0

.PHONY: test bench demo clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH_PIN)
	$(PY) -m pip install -e '.[test,sevennet,lammps,torchsim]'
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest tests

bench: $(VENV)/.installed
	mkdir -p benchmark/results
	$(PY) -m pytest benchmark -m 'not slow' --benchmark-only \
		--benchmark-json=benchmark/results/bench.json

demo: $(VENV)/.installed
	$(PY) examples/demo.py runs/si-sevennet

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
