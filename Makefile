# The README's two commands: `make demo` and `make test`. Both work on a fresh machine that has
# only Python 3.11+ and make: they create .venv and install the project with its extras first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench lint typecheck clean systemd-analyze

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/promotel demo

# The deploy tests run `systemd-analyze verify` on the unit file. Debian images ship systemd; if it is
# missing and we are root (CI), install it; otherwise say how.
systemd-analyze:
	@command -v systemd-analyze >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing systemd (for systemd-analyze)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; \
	  else echo "warning: systemd-analyze not found; install the 'systemd' package for the unit-file tests"; fi; }

# tests/e2e/test_real_prometheus.py compares with what Debian's Prometheus binary (/usr/bin/prometheus)
# ingests from the captured expositions. If it is missing and we are root (CI), install it; otherwise say how.
.PHONY: prometheus-binary
prometheus-binary:
	@test -x /usr/bin/prometheus || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing prometheus (for tests/e2e/test_real_prometheus.py)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "warning: /usr/bin/prometheus not found; install Debian's 'prometheus' package for the real-exporter tests"; fi; }

test: $(STAMP) systemd-analyze prometheus-binary
	$(BIN)/python -m pytest -q

typecheck: $(STAMP)
	$(BIN)/mypy

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
