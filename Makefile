# flights-app: `make run` starts everything on embedded defaults; `make test` runs the tests.
# Both install first when needed, so either works as the first command on a fresh clone.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KAFKA_LIB := .kafka/lib
POM    := flights_app/embedded/pom.xml
PYTEST_ARGS ?=

.PHONY: install run test bench lint soak model evaluate clean distclean

install: $(STAMP) $(KAFKA_LIB)/.resolved

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

run: install
	$(BIN)/flights-app up

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench.scorer
	@echo "make bench: the pipeline, latency, memory and scale-out benchmarks come with the benchmark issue"

soak: install
	$(BIN)/python -m pytest -m soak $(PYTEST_ARGS)
	@echo "make soak: the 30-minute run with restarts comes with the reliability issue"

# The shipped default model (ml/models/default.joblib + .json): reproducible, seed 1.
model: install
	$(BIN)/flights-app train --aircraft 300 --minutes 60 --seed 1 --anomaly-rate 0.01 --estimators 200 --contamination 0.01

evaluate: install
	$(BIN)/flights-app evaluate

lint: install
	$(BIN)/ruff check flights_app agents tables ml web tests

clean:
	rm -rf var test-output .pytest_cache

distclean: clean
	rm -rf $(VENV) .kafka *.egg-info
