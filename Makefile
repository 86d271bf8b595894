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
	# the trainer and the ONNX export: what the tests exercise. The W&B and MLflow extras are left out (their
	# offline tests skip without them; the others mock Lightning's logger interface): mlflow alone pulls
	# hundreds of MB into every CI run. `pip install -e '.[all]'` adds them.
	$(PY) -m pip install -q -e '.[train,export,dev]'
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
