# ketamine-cascade: the two commands of the README.
#   make run    - create .venv if needed, build the SBML, simulate, validate; outputs in results/
#   make test   - create .venv if needed, lint, and run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test build validate reference lint format clean notebooks

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m analysis.cli run

test: $(STAMP)
	$(PY) -m ruff check analysis tests models benchmarks notebooks
	$(PY) -m ruff format --check analysis tests models benchmarks notebooks
	$(PY) -m pytest -q

build: $(STAMP)
	$(PY) -m analysis.cli build

validate: $(STAMP)
	$(PY) -m analysis.cli validate

# Deliberately regenerate the pinned regression time courses after a reviewed model change.
reference: $(STAMP)
	$(PY) tests/make_reference.py

lint: $(STAMP)
	$(PY) -m ruff check analysis tests models benchmarks notebooks

format: $(STAMP)
	$(PY) -m ruff format analysis tests models benchmarks notebooks

clean:
	rm -rf results .pytest_cache .ruff_cache

# Regenerate the output-free .ipynb notebooks from their jupytext (percent .py) sources.
notebooks: $(STAMP)
	for f in notebooks/*.py; do $(VENV)/bin/jupytext --to ipynb --update-metadata '{"jupytext": null}' -q "$$f"; done
