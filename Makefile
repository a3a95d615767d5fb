# The README's two commands: `make demo` and `make test`. Both work on a fresh machine that has
# only Python 3.11+ and make: they create .venv and install the project with its extras first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench lint typecheck clean systemd-analyze prometheus tmux dnsmasq

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

# The relabeling tests and tests/e2e/test_real_prometheus.py compare promotel with the real Prometheus
# (Debian 12's package: Prometheus 2.42).
# If it is missing and we are root (CI), install it without starting the package's own service
# (policy-rc.d refuses service starts during the install; the unit is disabled after): the tests run
# /usr/bin/prometheus themselves, on loopback.
prometheus:
	@command -v /usr/bin/prometheus >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing prometheus (for the relabeling and real-exporter tests)"; \
	    guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then guard=1; \
	      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends prometheus >/dev/null; rc=$$?; \
	    if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	    if command -v systemctl >/dev/null 2>&1; then systemctl disable --quiet prometheus 2>/dev/null || true; fi; \
	    exit $$rc; \
	  else echo "warning: /usr/bin/prometheus not found; install the 'prometheus' package for the relabeling and real-exporter tests"; fi; }

# The DNS discovery tests run a real DNS server, dnsmasq: tests/discovery/test_dns_sd.py on 127.0.0.1 on a
# free high port; tests/discovery/test_dns_prometheus.py on port 53 of an address of its own in 127.0.53.0/24
# (Prometheus resolves through /etc/resolv.conf, which cannot name a port; it runs in a private mount namespace
# whose resolv.conf names that address, hence root). Debian's 'dnsmasq-base' is the binary alone; the
# 'dnsmasq' package adds a system service that would bind port 53 on every address, so it is not used. The policy-rc.d guard (as for prometheus) refuses any service
# start during the install all the same.
dnsmasq:
	@command -v /usr/sbin/dnsmasq >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing dnsmasq-base (for the DNS discovery tests)"; \
	    guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then guard=1; \
	      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends dnsmasq-base >/dev/null; rc=$$?; \
	    if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	    exit $$rc; \
	  else echo "warning: /usr/sbin/dnsmasq not found; install the 'dnsmasq-base' package for the DNS discovery tests"; fi; }

# The live views (`promotel top`, the demo) are tested the way a person sees them: in a real terminal, tmux.
tmux:
	@command -v tmux >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing tmux (for the live-view tests)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tmux >/dev/null; \
	  else echo "warning: tmux not found; install the 'tmux' package for the live-view tests"; fi; }

# Two workers, one per core: the suite runs in about 3.5 minutes instead of 6.5 (every test uses its own ports
# and temporary directories; the Prometheus and collector fixtures start once per worker).
test: $(STAMP) systemd-analyze prometheus dnsmasq tmux
	$(BIN)/python -m pytest -q -n 2

typecheck: $(STAMP)
	$(BIN)/mypy

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
