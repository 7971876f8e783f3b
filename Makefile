# tipmeter — the two commands a new machine needs: `make run` and `make test`.
# Both install what is missing first (a virtual environment with the pinned packages, a
# redis-server binary, and the browser client's one npm package; `make test` also Chromium for
# the browser tests), so a fresh Debian machine with python3, make and root needs nothing else.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := server,loadtest,dev

.DEFAULT_GOAL := help
JS_DIR := clients/js
JS_STAMP := $(JS_DIR)/node_modules/.installed

.PHONY: help install redis-server postgresql npm js chromium promtool run test lint typecheck pytest \
	lock clean soak bench screenshots

help:
	@echo "make run     install what is missing, then run tipmeter on its embedded defaults"
	@echo "            (its own redis-server and PostgreSQL, data in .tipmeter/)"
	@echo "make test    install what is missing, then run ruff, mypy --strict and pytest"
	@echo "make lock    re-pin constraints.txt from a fresh resolve (needs the package index)"
	@echo "make soak    settlement soak: 200+ kill -9 of workers under load, then the invariants"
	@echo "make bench   the benchmark against the in-repo baseline; writes docs/benchmarks.md"
	@echo "make loadtest  locust, headless, against a local tipmeter; CSV and HTML in reports/"
	@echo "make screenshots  retake the screenshots of the pages and the console (docs/screenshots/)"
	@echo "make docs   rewrite the generated parts of docs/protocol.md from clients/protocol.py"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamp depends on the two files that decide what is installed, so editing either one
# re-installs on the next run and nothing else does.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP) redis-server postgresql js

# redis-server is a system binary, not a Python package. Use the one on PATH (or the one that
# TIPMETER_REDIS_SERVER_BIN names); as root on Debian, install the distribution's package. A
# TIPMETER_REDIS_SERVER_BIN that names nothing runnable is a mistake to report, not a reason to
# install a package that would not be used anyway.
redis-server:
	@bin="$${TIPMETER_REDIS_SERVER_BIN:-redis-server}"; \
	if command -v "$$bin" >/dev/null 2>&1; then exit 0; fi; \
	if [ -n "$${TIPMETER_REDIS_SERVER_BIN:-}" ]; then \
		echo "TIPMETER_REDIS_SERVER_BIN=$$bin: no such program (missing, or not executable)." >&2; \
		echo "Point it at a redis-server binary, or unset it to use the one on PATH." >&2; \
		exit 1; \
	fi; \
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

# PostgreSQL (15 or newer) keeps the ledger of record. tipmeter runs Debian's server binaries
# (/usr/lib/postgresql/<version>/bin) as a private child process, as it runs redis-server; as
# root on Debian, install the distribution's package when no server binary is found. The
# package's own cluster is not used (nor needed): it is told not to create one.
postgresql:
	@bin="$${TIPMETER_POSTGRES_BIN_DIR:-}"; \
	if [ -n "$$bin" ]; then \
		if [ -x "$$bin/postgres" ] && [ -x "$$bin/initdb" ]; then exit 0; fi; \
		echo "TIPMETER_POSTGRES_BIN_DIR=$$bin holds no postgres and initdb binaries" >&2; \
		exit 1; \
	fi; \
	for found in /usr/lib/postgresql/*/bin/postgres; do \
		if [ -x "$$found" ]; then exit 0; fi; \
	done; \
	if command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing postgresql with apt-get"; \
		mkdir -p /etc/postgresql-common/createcluster.d; \
		echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/tipmeter.conf; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends postgresql >/dev/null; \
	else \
		echo "PostgreSQL (15 or newer) is missing. Install it with your package manager" >&2; \
		echo "(e.g. 'sudo apt-get install postgresql'), set TIPMETER_POSTGRES_BIN_DIR to the" >&2; \
		echo "folder of its postgres and initdb, or set TIPMETER_DATABASE_URL to a server." >&2; \
		exit 1; \
	fi

# npm installs the browser client's packages (@msgpack/msgpack's ES module build, which the
# server serves to the pages). Use the npm on PATH; as root on Debian, install the distribution's.
npm:
	@if command -v npm >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing nodejs and npm with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends nodejs npm >/dev/null; \
	else \
		echo "npm is missing. Install Node.js and npm with your package manager" >&2; \
		echo "(e.g. 'sudo apt-get install nodejs npm')." >&2; \
		exit 1; \
	fi

# Exactly what package-lock.json pins, with no install scripts; again only when either file changes.
$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json | npm
	cd $(JS_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

js: $(JS_STAMP)

# The browser tests drive Debian's Chromium (/usr/bin/chromium, or CHROMIUM_BIN) through
# Playwright; no browser is ever downloaded. As root on Debian, install the distribution's.
chromium:
	@bin="$${CHROMIUM_BIN:-/usr/bin/chromium}"; \
	if [ -x "$$bin" ]; then exit 0; fi; \
	if [ -z "$${CHROMIUM_BIN:-}" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium >/dev/null; \
	else \
		echo "$$bin is missing: the browser tests need Chromium. Install it with your package" >&2; \
		echo "manager (e.g. 'sudo apt-get install chromium'), or set CHROMIUM_BIN to the path" >&2; \
		echo "of a Chromium binary." >&2; \
		exit 1; \
	fi

# promtool checks the Prometheus alerting rules in ops/prometheus/ (tests/ops): Debian's
# prometheus package (or PROMTOOL_BIN). As root on Debian, install the distribution's; its
# server is not started (nor needed): only promtool is used.
promtool:
	@bin="$${PROMTOOL_BIN:-promtool}"; \
	if command -v "$$bin" >/dev/null 2>&1; then exit 0; fi; \
	if [ -z "$${PROMTOOL_BIN:-}" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing prometheus (for promtool) with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends prometheus >/dev/null; \
		if command -v systemctl >/dev/null 2>&1; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi; \
	else \
		echo "$$bin is missing: the alerting rules' tests need promtool. Install it with your" >&2; \
		echo "package manager (e.g. 'sudo apt-get install prometheus'), or set PROMTOOL_BIN." >&2; \
		exit 1; \
	fi

run: install
	$(BIN)/tipmeter serve

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: install chromium promtool
	$(BIN)/pytest

test: lint typecheck pytest

# The generated parts of the docs: docs/protocol.md's message tables, examples and codes, from
# the declarations in clients/protocol.py (tests/clients/test_protocol_docs.py fails when stale).
.PHONY: docs
docs: $(STAMP)
	$(BIN)/python -m clients.protocol_docs

# The README's screenshots: only the browser tests that take them, told to keep them in
# docs/screenshots/ (every other run leaves them in pytest's temporary folders).
screenshots: install chromium
	TIPMETER_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/pages -m screenshots -q

# Settlement soak: at least 200 random kill -9 of worker processes under load; prints the
# double captures, lost minor units and non-terminal tabs (all must be 0) and the seed; then the
# full 2,000-capture collection simulation (docs/collection.md), which make test leaves out.
soak: install
	$(BIN)/python -m tests.settlement.soak --kills 200
	TIPMETER_SIM_FULL=1 $(BIN)/pytest -q -s tests/settlement/collection/test_simulation.py

# The benchmark (about forty minutes): every figure of docs/benchmarks.md, measured in one run
# next to the in-repo baseline, with the machine; the table there is replaced. Then the
# operator console's slowest page over a ledger of 1,000,000 journal entries (docs/console.md).
bench: install
	$(BIN)/python -m loadtest.bench
	$(BIN)/python -m loadtest.bench_console

lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^tipmeter' > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .tipmeter $(JS_DIR)/node_modules

# Load test: starts tipmeter (with its own redis-server), runs locust headless against it for
# LOADTEST_TIME, writes locust's CSV and HTML report to LOADTEST_REPORTS, stops the server.
# The users' settings are LOADTEST_* environment variables (docs/loadtest.md).
LOADTEST_TIME ?= 60s
LOADTEST_USERS ?= 50
LOADTEST_SPAWN_RATE ?= 10
LOADTEST_REPORTS ?= reports/loadtest

.PHONY: loadtest
loadtest: install
	$(BIN)/python -m loadtest.run --time "$(LOADTEST_TIME)" --users "$(LOADTEST_USERS)" \
		--spawn-rate "$(LOADTEST_SPAWN_RATE)" --reports "$(LOADTEST_REPORTS)"
