# tipmeter — the two commands a new machine needs: `make run` and `make test`.
# Both install what is missing first (a virtual environment with the pinned packages, and a
# redis-server binary), so a fresh Debian machine with python3, make and root needs nothing else.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := server,loadtest,dev

.DEFAULT_GOAL := help
.PHONY: help install redis-server run test lint typecheck pytest lock clean soak

help:
	@echo "make run     install what is missing, then run tipmeter on its embedded defaults"
	@echo "make test    install what is missing, then run ruff, mypy --strict and pytest"
	@echo "make lock    re-pin constraints.txt from a fresh resolve (needs the package index)"
	@echo "make soak    settlement soak: 200+ kill -9 of workers under load, then the invariants"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamp depends on the two files that decide what is installed, so editing either one
# re-installs on the next run and nothing else does.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP) redis-server

# redis-server is a system binary, not a Python package. Use the one on PATH (or the one that
# TIPMETER_REDIS_SERVER_BIN names); as root on Debian, install the distribution's package.
redis-server:
	@bin="$${TIPMETER_REDIS_SERVER_BIN:-redis-server}"; \
	if command -v "$$bin" >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing redis-server with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends redis-server >/dev/null; \
	else \
		echo "redis-server (7.x) is missing. Install it with your package manager" >&2; \
		echo "(e.g. 'sudo apt-get install redis-server'), or set TIPMETER_REDIS_SERVER_BIN" >&2; \
		echo "to the path of a redis-server binary." >&2; \
		exit 1; \
	fi

run: install
	$(BIN)/tipmeter serve

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

# Settlement soak: at least 200 random kill -9 of worker processes under load; prints the
# double captures, lost minor units and non-terminal tabs (all must be 0) and the seed.
soak: install
	$(BIN)/python -m tests.settlement.soak --kills 200

lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^tipmeter' > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .tipmeter
