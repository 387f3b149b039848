# Two commands do all set-up: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CHROMIUM := /usr/bin/chromium

.PHONY: demo test install lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Reinstall only when the dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed $(CHROMIUM)

# The console's browser tests (tests/web) drive Debian's Chromium through Playwright;
# installed here when missing and we are root (apt), never downloaded by Playwright.
# Without it (not root, no apt) those tests skip and say why (fail under CI=true).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "warning: could not install chromium -- browser tests will skip (fail under CI=true)"; \
	else echo "note: $(CHROMIUM) missing (install the chromium package) -- browser tests will skip"; fi

test: install
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/python scripts/demo.py

lint: install
	$(BIN)/ruff check plinth tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
