# The two set-up commands of the README: `make demo` (the web app with demo data on SQLite)
# and `make test` (the whole test suite). Both create the virtual environment when needed.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ketacare demo

test: $(STAMP)
	$(VENV)/bin/pytest -n auto --dist loadfile
