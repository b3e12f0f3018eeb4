# flights-app: `make run` starts everything on embedded defaults; `make test` runs the tests.
# Both install first when needed, so either works as the first command on a fresh clone.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KAFKA_LIB := .kafka/lib
POM    := flights_app/embedded/pom.xml
# Two test processes (pytest-xdist), each with its own broker: the tests wait on brokers, workers and
# browsers much of the time, so two share the 2 cores well; the tests that start a whole stack or a
# browser run one at a time in one of them (tests/conftest.py). PYTEST_ARGS= runs them in one process.
PYTEST_ARGS ?= -n 2 --dist loadgroup

.PHONY: install chromium-check compose-check run test bench bench-dashboard lint soak model evaluate secrets clean distclean

MAPS   := .maps/land-110m.json
PROMTOOL := $(BIN)/promtool
WORLD_ATLAS := world-atlas@2.0.2

install: $(STAMP) $(KAFKA_LIB)/.resolved $(MAPS) $(PROMTOOL) chromium-check compose-check

$(STAMP): setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; set PYTHON=python3.x (3.11+)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

$(KAFKA_LIB)/.resolved: $(POM)
	@command -v java >/dev/null || { echo "make: java not found; install a JDK 17 (Debian: apt-get install openjdk-17-jre-headless)"; exit 1; }
	@command -v mvn >/dev/null || { echo "make: mvn not found; install Maven (Debian: apt-get install maven)"; exit 1; }
	@echo "Resolving Apache Kafka 3.9 (embedded broker) from Maven Central into $(KAFKA_LIB)..."
	mvn -q -B -f $(POM) dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(KAFKA_LIB) -DincludeScope=runtime
	@touch $@

# The dashboard's offline map: Natural Earth 1:110m land, from the npm package world-atlas.
$(MAPS):
	@command -v npm >/dev/null || { echo "make: npm not found (Debian: apt-get install npm); the map will have no outline"; exit 0; }
	@mkdir -p .maps
	cd .maps && npm pack $(WORLD_ATLAS) --silent >/dev/null && tar -xzf world-atlas-*.tgz package/land-110m.json -O > land-110m.json.tmp && mv land-110m.json.tmp land-110m.json && rm -f world-atlas-*.tgz

# $(call debian,COMMAND,PACKAGE,WHAT NEEDS IT): Debian's PACKAGE installed when COMMAND is missing and
# we are root with apt; otherwise one line saying what to install. (No commas in the arguments.)
debian = command -v $(1) >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's $(2) ($(3))..."; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q $(2) >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $(2) >/dev/null; }; \
	  else echo "make: $(1) not found: $(3) need it (Debian: sudo apt-get install $(2))"; fi; }

# tests/test_monitoring.py checks the Prometheus rules with promtool, and `make soak SOAK_ARGS=--chaos`
# scrapes the workers with a real Prometheus: both unpacked from Debian's prometheus package into the
# virtualenv (nothing installed system-wide, no Prometheus service started).
$(PROMTOOL): | $(STAMP)
	@command -v apt-get >/dev/null || { echo "make: apt-get not found: the monitoring tests need promtool (Prometheus 2.x) on the PATH"; exit 0; }
	@echo "Unpacking promtool and prometheus from Debian's prometheus package..."
	@tmp=$$(mktemp -d) && cd $$tmp && { apt-get download -q prometheus >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get download -q prometheus >/dev/null 2>&1; }; } && \
	  dpkg-deb -x prometheus_*.deb unpacked && \
	  mv unpacked/usr/bin/prometheus $(CURDIR)/$(BIN)/prometheus && \
	  mv unpacked/usr/bin/promtool $(CURDIR)/$@ || \
	  { echo "make: could not get Debian's prometheus package: the monitoring tests need promtool on the PATH"; }; \
	  rm -rf $$tmp

# The dashboard's browser tests use Debian's Chromium.
chromium-check:
	@$(call debian,chromium,chromium,the dashboard's browser tests)

# tests/test_deploy.py validates docker-compose.yml with Debian's docker-compose (no Docker engine needed).
compose-check:
	@$(call debian,docker-compose,docker-compose,the deployment tests)

run: install
	$(BIN)/flights-app up

# A development set of the deployment's secrets in ./secrets (docker-compose.yml mounts them; never committed).
secrets: install
	$(BIN)/flights-app dev-secrets --out secrets

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every benchmark side by side (about 18 minutes here); BENCH_ARGS=--quick for a 1-minute check of the harness.
BENCH_ARGS ?=
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

# The dashboard in headless Chromium for 90 s at 12,000 and 20,000 aircraft (flights-app up --source sim)
# and 40,000 (a prepared feed, no worker); DASHBOARD_BENCH_ARGS="--plan 12000:prepared --seconds 30" for one size.
DASHBOARD_BENCH_ARGS ?=
bench-dashboard: install
	$(BIN)/python -m bench.dashboard $(DASHBOARD_BENCH_ARGS)

# 30 minutes at 1,000 states/s with a worker restart every 5 minutes (alternately kill -9 and SIGTERM),
# the topics' retention 6 minutes so the broker's disk must level off;
# SOAK_ARGS="--minutes 5 --restart-every 100" for a shorter run.
SOAK_ARGS ?=
soak: install
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# The shipped default model (ml/models/default.joblib + .json): reproducible, seed 1.
model: install
	$(BIN)/flights-app train --aircraft 300 --minutes 60 --seed 1 --estimators 200 --budget 0.001

evaluate: install
	$(BIN)/flights-app evaluate --docs docs/anomaly-detection.md

lint: install
	$(BIN)/ruff check flights_app agents tables ml web tests

clean:
	rm -rf var test-output .pytest_cache

distclean: clean
	rm -rf $(VENV) .kafka .maps *.egg-info
