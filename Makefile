# One command each for set-up, tests and the demo; every target builds .venv itself on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# torch and torchvision pinned together: this pair is built for each other.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	# every extra: the tests exercise the trainer, ONNX export and the W&B and MLflow loggers (offline)
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

test: lint
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

demo: $(STAMP)
	$(VENV)/bin/featspace demo

bench: $(STAMP)
	$(PY) benchmarks/heads.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
