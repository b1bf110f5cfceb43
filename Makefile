# The two commands of the README:
#   make demo   — the whole loop on loopback (installs the project into .venv first)
#   make test   — installs what the tests need (Debian's prometheus and postgresql) and runs
#                 ruff, mypy and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test test-deps lint typecheck pytest clean

$(BIN)/rollback-watchdog: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/rollback-watchdog
	$(BIN)/rollback-watchdog demo

test-deps: $(BIN)/rollback-watchdog
	./.ci/install-system-deps

lint: $(BIN)/rollback-watchdog
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/rollback-watchdog
	$(BIN)/mypy

pytest: $(BIN)/rollback-watchdog
	$(BIN)/python -m pytest

test: test-deps lint typecheck pytest

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
