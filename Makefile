# Two commands a newcomer needs:  make run   and   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000

.PHONY: run test lint bench system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The service alone (no test tools, no torch).
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

# Everything the tests need, torch (CPU, from local disk) included.
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Debian packages the tests use for real: redis-server (rate limits shared across
# workers), chromium (the page's browser tests, driven by Playwright) and nginx
# (tests/test_topology.py runs deploy/nginx.conf in front of two replicas; the tests start
# their own nginx and never use the system service apt may start on port 80). Installed
# through apt when running as root; tests that need a missing one fail with a message
# naming it. Each package installs a command of its own name; nginx lives in /usr/sbin,
# often not on a user's PATH, so it is looked for there too.
SYSTEM_PACKAGES := redis-server chromium nginx
system-deps:
	@PATH="$$PATH:/usr/local/sbin:/usr/sbin:/sbin"; \
	missing=""; for tool in $(SYSTEM_PACKAGES); do command -v $$tool >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "install these Debian packages first: $(SYSTEM_PACKAGES)"; exit 1; fi; \
	fi

run: $(VENV)/.runtime
	PORT=$(PORT) $(BIN)/gradient-service serve

# Redocly CLI, pinned in package.json and package-lock.json, into ./node_modules.
REDOCLY := node_modules/.bin/redocly
$(REDOCLY): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The document the service serves, checked with Redocly's recommended rules (redocly.yaml).
lint: $(VENV)/.dev $(REDOCLY)
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --check --no-cache .
	@mkdir -p build
	$(BIN)/flask --app 'service:create_app()' openapi write --format json build/openapi.json
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true $(REDOCLY) lint --format=stylish build/openapi.json

test: $(VENV)/.dev system-deps lint
	$(BIN)/pytest

# The benchmark suite (scripts, not tests): prints figures and ratios with their targets.
bench: $(VENV)/.dev system-deps
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info node_modules build/openapi.json
