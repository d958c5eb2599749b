# `make run` and `make test` each bootstrap .venv from pyproject.toml first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Teleroom needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# ical.js (independent iCalendar parser) and the PeerJS server for benchmarks.
$(NODE_STAMP): package.json
	@if command -v npm >/dev/null 2>&1; then npm install --silent --no-audit --no-fund && touch $(NODE_STAMP); \
	 else echo "npm not found: tests that need ical.js will skip"; fi

run: $(STAMP)
	$(BIN)/teleroom serve

lint: $(STAMP)
	$(BIN)/ruff check broker signaling calendars web tests bench
	$(BIN)/mypy

test: $(STAMP) $(NODE_STAMP) lint
	$(BIN)/pytest -q

bench: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m bench.booking
	$(BIN)/python -m bench.slots
	$(BIN)/python -m bench.tokens
	$(BIN)/python -m bench.feed
	$(BIN)/python -m bench.signaling

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
