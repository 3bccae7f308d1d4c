# wheelwell developer targets. Every target fails loudly; none swallows an error.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv browser nginx deploy-tools run test test-fast test-deploy e2e lint fmt cov bench check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "wheelwell needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	if [ -d .git ]; then git config core.hooksPath .githooks; fi
	touch $(STAMP)

run: venv
	$(BIN)/wheelwell serve

# The real-browser test drives Debian's headless Chromium; install it when it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package) for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The reverse-proxy test runs a real nginx in front of the daemon, the TLS tests make a test CA
# with openssl; install them when they are missing.
nginx:
	@{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } && command -v openssl >/dev/null 2>&1 || { \
	  echo "installing nginx and openssl (Debian packages) for the reverse-proxy and TLS tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx openssl; }

test: venv browser nginx
	$(BIN)/python -m pytest -q

# make test-deploy: the deploy files run by real engines (tests/deploy; minutes, needs root).
# Debian packages: podman with runc, debootstrap for the base image, systemd-nspawn, promtool and
# Prometheus. A step whose engine cannot run here skips with one line saying why.
DEPLOY_PACKAGES := podman runc uidmap slirp4netns fuse-overlayfs debootstrap systemd-container prometheus
deploy-tools:
	@missing=$$(for p in $(DEPLOY_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing for make test-deploy:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

test-deploy: venv deploy-tools
	$(BIN)/python -m pip install --quiet -e '.[deploy]'
	WHEELWELL_TEST_DEPLOY=1 $(BIN)/python -m pytest -q tests/deploy

test-fast: venv
	$(BIN)/python -m pytest -q tests/unit tests/integration tests/test_layers.py

e2e: venv
	$(BIN)/python -m pytest -q tests/e2e

lint: venv
	$(BIN)/ruff format --check proxy tests bench
	$(BIN)/ruff check proxy tests bench
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff format proxy tests bench
	$(BIN)/ruff check --fix proxy tests bench

bench: venv
	$(BIN)/python bench/run.py

check: lint test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
