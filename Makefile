# ModelRollout entry points. A fresh machine needs only: python3.11, go, kubectl, make (and root for apt).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Heavy builds (Kubernetes, etcd, kwok, helm) are cached here, keyed by version.
export MODELROLLOUT_CACHE ?= $(HOME)/.cache/modelrollout
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# --- set-up ------------------------------------------------------------------------------------------

# Compiled to bytecode once, as the images are (hack/install-image.sh): the tests start hundreds of Python processes
# (operators, model servers, routers, consumers, the kubelet's pods), and where PYTHONDONTWRITEBYTECODE is set, as
# on the development machine, none of them caches what it compiles, so each would compile numpy, scipy, sklearn and
# ours again (a fresh clone's integration suite took 14-15 min against 9.5-10 min once bytecode existed).
$(VENV)/.installed: requirements.lock operator/pyproject.toml model-server/pyproject.toml contract/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e ./operator -e ./model-server
	$(BIN)/python -m compileall -q -j 0 operator/modelrollout model-server/modelserver contract/modelrollout_contract testkit
	touch $@

# The gRPC service's message code and its type stubs, generated from its .proto files (never committed).
GRPC_PROTO := model-server/modelserver/grpc_api/grpc_predict_v2.proto model-server/modelserver/grpc_api/model_repository.proto
GRPC_CODE  := $(GRPC_PROTO:.proto=_pb2.py)
$(GRPC_CODE) &: $(GRPC_PROTO) hack/gen-grpc.sh $(VENV)/.installed
	hack/gen-grpc.sh $(BIN)/python model-server --stubs

.PHONY: venv
venv: $(VENV)/.installed $(GRPC_CODE) ## create .venv with the pinned dependencies and both packages (editable), generate the gRPC code

.PHONY: lock
lock: ## re-pin requirements.lock after a dependency change in a pyproject or requirements-dev.in
	test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install -q uv; }
	$(BIN)/uv pip compile -q --python-version 3.11 --universal -o requirements.lock \
	  operator/pyproject.toml model-server/pyproject.toml requirements-dev.in

.PHONY: tools
tools: ## build (once, cached by version) kube-apiserver/controller-manager/scheduler, etcd, kwok, kwokctl
	hack/build-tools.sh

# --- local cluster ------------------------------------------------------------------------------------

.PHONY: cluster-up
cluster-up: tools ## start the local control plane (kwok fake nodes); prints the kubeconfig path
	hack/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## stop and delete the local control plane
	hack/cluster-down.sh

.PHONY: mesh-crds
mesh-crds: ## fetch (once, cached by version) the Gateway API and Istio CRDs; the traffic tests install them
	hack/mesh-crds.sh

.PHONY: chart-tools
chart-tools: ## build (once, cached by version) helm, kubeconform, kube-score, helm-unittest, actionlint and their offline schemas
	hack/build-chart-tools.sh

.PHONY: keda-crds
keda-crds: ## fetch (once, cached by version) KEDA's CRDs (ScaledObject, ...); the keda_crds fixture installs them
	hack/keda-crds.sh

# --- quality -----------------------------------------------------------------------------------------

.PHONY: fmt
fmt: venv ## format and auto-fix
	$(BIN)/ruff format operator model-server contract testkit tests hack bench
	$(BIN)/ruff check --fix operator model-server contract testkit tests hack bench

.PHONY: lint
# mypy's cache lives outside the clone, by mypy and pydantic (its plugin) version: a fresh clone checks in ~1 s
# instead of ~28 (mypy validates each cached module by its content, so another checkout's cache is safe to reuse).
lint: venv ## ruff (lint + format check), mypy --strict on our packages, the import layering (import-linter)
	$(BIN)/ruff check operator model-server contract testkit tests hack bench
	$(BIN)/ruff format --check operator model-server contract testkit tests hack bench
	$(BIN)/mypy --cache-dir "$(MODELROLLOUT_CACHE)/mypy/$$($(BIN)/python -c 'import mypy.version, pydantic; print(mypy.version.__version__, pydantic.VERSION, sep="-")')"
	$(BIN)/lint-imports --no-cache

.PHONY: test-unit
test-unit: venv ## pure unit tests (no processes, no network)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

.PHONY: test-integration
INTEGRATION_WORKERS ?= 2
test-integration: venv tools chart-tools prometheus mesh-crds keda-crds kafka seaweedfs ## integration tests against real kube-apiservers, one per worker (started if KUBECONFIG is unset)
	$(BIN)/pytest -m integration -n $(INTEGRATION_WORKERS) --dist loadfile --no-loadscope-reorder tests/integration $(PYTEST_ARGS)

.PHONY: test-e2e
E2E_WORKERS ?= 2
test-e2e: venv tools prometheus keda-crds kafka seaweedfs ## end-to-end: operator + API server + Prometheus + real model servers and router (a cluster per worker; tests that assert wall-clock bounds run alone afterwards)
	$(BIN)/pytest -m "e2e and not timing" -n $(E2E_WORKERS) tests/e2e $(PYTEST_ARGS)
	$(BIN)/pytest -m "e2e and timing" tests/e2e $(PYTEST_ARGS)

.PHONY: test-faults
FAULTS_WORKERS ?= 2
test-faults: venv tools prometheus mesh-crds keda-crds kafka seaweedfs ## fault injection on the e2e setup: operator and router killed (kill -9) at every step, users' concurrent edits, the control plane failing
	$(BIN)/pytest -m faults -n $(FAULTS_WORKERS) tests/faults $(PYTEST_ARGS)

.PHONY: check-chart
check-chart: venv chart-tools ## the chart through helm lint --strict, kubeconform -strict, kube-score, helm-unittest; actionlint
	hack/check-chart.sh

.PHONY: test
test: lint check-chart test-unit test-integration test-e2e test-faults ## everything CI runs: lint, chart checks, unit, integration, e2e, faults

# --- API -----------------------------------------------------------------------------------------------

CRD_FILE := crds/modelrollout.dev_modeldeployments.yaml

.PHONY: crds
crds: venv ## regenerate the CRD from the pydantic models, and the chart's copy (a unit test fails when stale)
	$(BIN)/python -m modelrollout.api.crd > $(CRD_FILE)
	$(BIN)/python -m modelrollout.chart.generate charts/modelrollout

.PHONY: chart
chart: venv ## regenerate the chart's generated files: values schema and defaults, RBAC rules, CRD (a unit test fails when stale)
	$(BIN)/python -m modelrollout.chart.generate charts/modelrollout

.PHONY: manifests
manifests: chart chart-tools ## render deploy/ from the chart (an integration test fails when it is stale)
	hack/render-manifests.sh

# --- product ----------------------------------------------------------------------------------------

DEMO_CLUSTER ?= mr-demo

.PHONY: demo
demo: venv tools prometheus ## canary rollouts on a local cluster, printed as they happen (KEEP=1 keeps it running)
	CLUSTER_NAME=$(DEMO_CLUSTER) hack/demo.sh

.PHONY: e2e-kind
e2e-kind: venv prometheus keda-crds kafka seaweedfs ## build the images, run them on a kind cluster, then the e2e suite against it (needs Docker; never used by make test)
	hack/e2e-kind.sh

# --- model server -------------------------------------------------------------------------------------

MODEL ?=
ARGS ?=
MLSERVER_VERSION ?= 1.7.1
MLSERVER_VENV := $(MODELROLLOUT_CACHE)/venvs/mlserver-$(MLSERVER_VERSION)

# MLServer's pins conflict with ours, so it gets its own venv outside the repo. scikit-learn is pinned to
# the version in requirements.lock so both servers load the same joblib files; uvloop < 0.22 because
# MLServer 1.7.1's inference workers call asyncio.get_event_loop(), which newer uvloop refuses.
$(MLSERVER_VENV)/.installed: requirements.lock
	test -x $(MLSERVER_VENV)/bin/python || $(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install -q --disable-pip-version-check \
	  mlserver==$(MLSERVER_VERSION) mlserver-sklearn==$(MLSERVER_VERSION) "uvloop<0.22" \
	  scikit-learn==$$(sed -n 's/^scikit-learn==\([^ ;]*\).*/\1/p' requirements.lock | head -1)
	touch $@

.PHONY: serve
serve: venv ## serve a model on :8080: make serve MODEL=<path|file://|http(s)://|s3://> [ARGS="--batching"]
	test -n "$(MODEL)" || { echo "usage: make serve MODEL=<model uri> [ARGS=...]"; exit 2; }
	$(BIN)/modelserver serve --model-uri "$(MODEL)" $(ARGS)

.PHONY: bench-serving
bench-serving: venv $(MLSERVER_VENV)/.installed ## modelserver vs MLServer, and our gRPC vs our REST, on loopback (~17 min; BENCH_ARGS=--grpc-only: the gRPC row alone, appended) -> bench/results/serving.md
	command -v wrk >/dev/null || apt-get install -y wrk
	ghz="$$(hack/build-ghz.sh)" && $(BIN)/python -m bench.serving.run --mlserver-python $(MLSERVER_VENV)/bin/python \
	  --mlserver-version $(MLSERVER_VERSION) --ghz "$$ghz" --ghz-version "$$(sed -n 's/^GHZ_VERSION=//p' hack/versions.env)" \
	  --out bench/results/serving.md --workdir bench/results/raw/serving $(BENCH_ARGS)

# --- analysis -------------------------------------------------------------------------------------------

.PHONY: prometheus
prometheus: ## install Prometheus (Debian package) for the analysis tests, unless one is on PATH
	hack/install-prometheus.sh

.PHONY: seaweedfs
seaweedfs: ## build SeaweedFS's weed (once, cached by version): the S3-compatible store of the batch and storage tests
	hack/build-seaweedfs.sh

.PHONY: kafka
kafka: ## install Apache Kafka's broker jars (Maven Central, cached by version) for the stream tests
	hack/install-kafka.sh

.PHONY: test-analysis
test-analysis: venv prometheus ## the Prometheus provider against a real Prometheus scraping a real exporter
	$(BIN)/pytest -m integration tests/integration/analysis $(PYTEST_ARGS)

# --- router -------------------------------------------------------------------------------------------

.PHONY: bench-router
bench-router: venv ## model server direct vs through `modelserver route` (100/0, 90/10, 100/0 with a fallback chain), and a 3-member ensemble vs its slowest member, on loopback (~13 min) -> bench/results/router.md
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python -m bench.router.run --out bench/results/router.md --workdir bench/results/raw/router

# --- batch --------------------------------------------------------------------------------------------

.PHONY: bench-batch
bench-batch: venv ## modelserver batch vs the floor (pyarrow+predict), raw predict and a pandas script; 1M and 10M rows (~25 min) -> bench/results/batch.md
	$(BIN)/python -m bench.batch.run --out bench/results/batch.md --workdir bench/results/raw/batch $(BENCH_ARGS)

# --- stream -------------------------------------------------------------------------------------------

# MLServer's Kafka mode imports aiokafka, which `pip install mlserver` leaves out.
$(MLSERVER_VENV)/.aiokafka: $(MLSERVER_VENV)/.installed
	$(MLSERVER_VENV)/bin/pip install -q --disable-pip-version-check aiokafka
	touch $@

.PHONY: bench-stream
bench-stream: venv kafka $(MLSERVER_VENV)/.aiokafka ## modelserver stream (exactly-once, at-least-once) vs the obvious poll-predict-commit loop, MLServer's Kafka mode and raw predict, one consumer on one core (~7 min) -> bench/results/stream.md
	$(BIN)/python -m bench.stream.run --mlserver-python $(MLSERVER_VENV)/bin/python \
	  --mlserver-version $(MLSERVER_VERSION) --out bench/results/stream.md --workdir bench/results/raw/stream $(BENCH_ARGS)

# --- operator -----------------------------------------------------------------------------------------

SIZES ?= 100,1000,3000
VERSIONS ?= before,after
BEFORE ?= 7bed7b4
AFTER ?=
OPERATOR_BENCH_OUT ?= bench/results/operator.md

# BEFORE: the commit before the scale work; AFTER (empty): this checkout as it is. One fresh cluster (mr-bench) at a
# time, deleted after each version and size; raw data in bench/results/raw/operator. BENCH_ARGS: see --help.
.PHONY: bench-operator
bench-operator: venv tools ## the operator cold-started on 100/1,000/3,000 ModelDeployments, before vs after the scale work (~1.5-2 h; longer when runs hit their caps) -> bench/results/operator.md
	$(BIN)/python -m bench.operator.run --sizes $(SIZES) --versions $(VERSIONS) --before $(BEFORE) --after "$(AFTER)" \
	  --out $(OPERATOR_BENCH_OUT) --workdir bench/results/raw/operator $(BENCH_ARGS)

# --- decisions ----------------------------------------------------------------------------------------

.PHONY: bench-decisions
bench-decisions: venv ## every analysis judge on 1000 seeded simulated rollouts per scenario, decided by the real tick (~7 min on 2 cores) -> bench/results/decisions.md
	$(BIN)/python bench/decisions/run.py --seeds 1000 --jobs 2 --out bench/results/decisions.md
