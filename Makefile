# Two commands do all set-up: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Reinstall only when the dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/python scripts/demo.py

lint: install
	$(BIN)/ruff check plinth tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
