# Two commands on a fresh machine: `make run` and `make test`. Both install what is missing
# (a virtualenv with xbus and its dependencies; PostgreSQL, Prometheus and Alertmanager from
# Debian's packages; Kafka and the registry jars on first start).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
MYPY_PACKAGES := -p xbus.core -p xbus.producers -p xbus.streams -p xbus.consumers -p xbus.deploy -p xbus.console -p xbus.cli

.PHONY: install run test faults soak unit lint bench down clean manifests

install: $(STAMP)
	@sh deploy/install-packages.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "xbus needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1)." \
	       "Set PYTHON=/path/to/python3.11 or install it."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# The whole local stack with the demo; Ctrl-C stops everything it started.
run: install
	$(BIN)/xbus stack up --cdc

# Lint and strict typing first (seconds); then a throw-away broker, registry, PostgreSQL and
# Kafka Connect worker on free ports, the whole suite against them (the layering and wheel
# checks included), then stop; then the tests that stop Kafka nodes (tests/faults, the short
# form) on a throw-away stack of three.
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy $(MYPY_PACKAGES)
	$(BIN)/xbus stack exec --cdc -- $(BIN)/python -m pytest -m 'not cluster' $(PYTEST_ARGS)
	$(BIN)/xbus stack exec --brokers 3 -- $(BIN)/python -m pytest -m cluster $(FAULTS_PYTEST_ARGS)

# The bus at a fixed rate for a long time, every component's memory, file descriptors and
# threads sampled each minute; fails on growth after the warm-up (docs/reliability.md).
# SOAK_ARGS: --minutes 30 --rate 1000 by default.
soak: install
	$(BIN)/xbus stack exec -- $(BIN)/python -m tests.benchmarks.soak $(SOAK_ARGS)

# The fault tests in their full form, on a throw-away stack of three Kafka nodes
# (docs/reliability.md).
faults: install
	XBUS_FAULTS_FULL=1 $(BIN)/xbus stack exec --brokers 3 -- $(BIN)/python -m pytest -m cluster $(FAULTS_PYTEST_ARGS)

# Publishing throughput of the SDK next to raw confluent-kafka (docs/publishing.md), and the
# engine next to a raw passthrough (docs/grants.md), end-to-end delivery latency to a webhook
# and a connector's memory while its target is down (docs/delivery.md), change data capture's
# snapshot, bridge and latency (docs/cdc.md), each on a throw-away stack of its own; and the
# stack's start-up, secured next to open (docs/security.md).
bench: install
	$(BIN)/xbus stack exec -- $(BIN)/python tests/benchmarks/bench_publish.py $(BENCH_ARGS)
	$(BIN)/xbus stack exec -- $(BIN)/python -m tests.benchmarks.bench_engine $(ENGINE_BENCH_ARGS)
	$(BIN)/xbus stack exec -- $(BIN)/python -m tests.benchmarks.bench_delivery $(DELIVERY_BENCH_ARGS)
	$(BIN)/xbus stack exec -- $(BIN)/python -m tests.benchmarks.bench_backpressure
	$(BIN)/xbus stack exec --cdc -- $(BIN)/python -m tests.benchmarks.bench_cdc $(CDC_BENCH_ARGS)
	$(BIN)/python tests/benchmarks/bench_startup.py

unit: install
	$(BIN)/python -m pytest -m 'not broker' $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PACKAGES)
	$(BIN)/lint-imports

# The generated parts of deploy/kubernetes: the Strimzi topics and users of bus.yaml, the
# alert rules of deploy/prometheus/alerts.yml as a PrometheusRule, and the broker's JMX exporter
# rules as the ConfigMap Strimzi's metricsConfig reads (tests/deploy fail when any is stale).
manifests: install
	$(BIN)/xbus provision --format strimzi --file bus.yaml --output deploy/kubernetes/strimzi/bus.yaml
	$(BIN)/python -m xbus.deploy.prometheus_rule deploy/prometheus/alerts.yml \
	  > deploy/kubernetes/monitoring/prometheus-rule.yaml
	$(BIN)/python -m xbus.deploy.kafka_metrics_config deploy/xbus/deploy/resources/kafka/jmx-exporter.yml \
	  > deploy/kubernetes/kafka/metrics-config.yaml

# Stop what a killed `make run` left behind.
down: install
	$(BIN)/xbus stack down

clean:
	rm -rf $(VENV) .xbus
