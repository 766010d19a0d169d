# The front door. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A real interpreter, never a version-manager shim (its start costs ~80 ms per CNI call).
BASE_PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; assert sys.version_info >= (3, 11); print(sys.executable)' 2>/dev/null && break; done)
DEB_PACKAGES := containernetworking-plugins iproute2 iptables nftables procps iputils-ping util-linux python3-venv patchelf
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help setup test demo demo-cluster lint type proto proto-verify crds crds-verify docs docs-verify bench bench-alloc bench-cni bench-scale bench-storm bench-cluster bench-chaos dist clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv, install the project (editable, test extras) and the Debian packages it needs

$(STAMP): pyproject.toml
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing Debian packages (need root):$$missing" >&2; fi; fi
	test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: setup ## run the whole test suite (unit, component, netns as root, end to end)
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=25 $(PYTEST_ARGS)

demo: setup ## the main job: controller + agent on SQLite, real macvlan pods in namespaces getting IPs
	$(VENV)/bin/spiderpool-demo

demo-cluster: setup ## the Kubernetes mode without a cluster: simulated API server, 3 nodes, kubectl (Ctrl-C ends)
	$(VENV)/bin/spiderpool-demo-cluster $(DEMO_ARGS)

lint: setup ## ruff on our code (generated code excluded), and the import-linter layering contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo --no-cache

type: setup ## mypy strict on our code
	$(VENV)/bin/mypy services plugins bench tests

PROTO_FILES := $(shell find proto -name '*.proto' | sort)
PROTOC := $(PY) -m grpc_tools.protoc -Iproto --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
	--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc
proto: setup ## regenerate Python code and mypy stubs from proto/
	$(PROTOC) --python_out=proto --grpc_python_out=proto \
	  --mypy_out=proto --mypy_grpc_out=proto $(PROTO_FILES)

proto-verify: setup ## fail when the committed generated code is not current
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	$(PROTOC) --python_out=$$tmp --grpc_python_out=$$tmp \
	  --mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTO_FILES) && \
	for f in $$(cd $$tmp && find . -type f); do \
	  cmp -s $$tmp/$$f proto/$$f || { echo "proto: $$f is stale; run make proto" >&2; exit 1; }; done; \
	echo "proto: generated code is current"

# The CRDs are generated from the domain's field tables (crd_schema.py) into deploy/crds and, once the
# Helm chart exists, into its crds/ too: Helm only packages files inside the chart directory.
CRD_DIRS := deploy/crds $(wildcard deploy/chart/spiderpool/crds)
CRDGEN := $(PY) -m spiderpool_tools.crdgen $(foreach d,$(CRD_DIRS),--out $(d))
crds: setup ## regenerate the CustomResourceDefinitions from the domain's field tables
	$(CRDGEN)

crds-verify: setup ## fail when the committed CRDs are not what the field tables generate
	$(CRDGEN) --check

# docs/configuration.md is generated from the settings dataclasses and the programs' argparse help.
DOCGEN := $(PY) -m spiderpool_tools.config_reference --out docs/configuration.md
docs: setup ## regenerate docs/configuration.md from the settings code
	$(DOCGEN)

docs-verify: setup ## fail when docs/configuration.md is not what the settings code generates
	$(DOCGEN) --check

bench: bench-alloc bench-cni bench-scale bench-storm bench-cluster bench-chaos ## run every benchmark (prints figures and a JSON line each)

bench-alloc: setup ## allocation throughput: group commit vs upstream's CAS per agent, one shared store (BENCH_ARGS=--quick)
	$(PY) bench/alloc_throughput.py $(BENCH_ARGS)

bench-scale: setup ## allocation cost by pool size (/24, /16, /8, v6 /64), memory, restart with 10,000 allocations
	$(PY) bench/pool_scale.py $(BENCH_ARGS)

bench-storm: setup ## 300 pods over 3 nodes in the simulated cluster: pods/s, API writes, leaks, leader failover (root)
	$(PY) bench/cluster_storm.py $(BENCH_ARGS)

bench-cluster: setup ## upstream's 1000-pod scenario in the simulated cluster, ours vs upstream's CAS agents (root)
	$(PY) bench/cluster_alloc.py $(BENCH_ARGS)

bench-cni: setup ## CNI ADD+DEL latency in network namespaces, ours vs host-local, also on the bundle (root)
	$(PY) -m spiderpool_tools.pybundle_build --python $(BUNDLE_PYTHON) --out $(DIST)/pybundle
	$(PY) bench/cni_latency.py --bundle $(DIST)/pybundle $(BENCH_ARGS)

CHAOS_SECONDS ?= 120
bench-chaos: setup ## the long chaos storms (root): embedded mode, then the simulated cluster (CHAOS_SECONDS=120)
	$(PY) -m tests.chaos.embedded_storm --seconds $(CHAOS_SECONDS)
	$(PY) -m tests.chaos.cluster_storm --seconds $(CHAOS_SECONDS)

# The packaged artefacts deploy/Dockerfile copies: the wheel, its runtime dependencies pinned to the
# versions tested here, and the interpreter bundle the shims run on at the node (its own CPython,
# loader and libc, the stdlib modules the shims import and the shims' modules).
DIST ?= dist
BUNDLE_PYTHON ?= $(shell $(PY) -c 'from spiderpool_cni.install import default_interpreter as d; print(d())' 2>/dev/null)
dist: setup ## build dist/: the wheel, requirements.txt (pinned), pybundle/ (interpreter + shims for the nodes)
	rm -rf $(DIST) && mkdir -p $(DIST)
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w $(DIST) .
	$(PY) -m spiderpool_tools.pin_requirements > $(DIST)/requirements.txt
	$(PY) -m spiderpool_tools.pybundle_build --python $(BUNDLE_PYTHON) --out $(DIST)/pybundle

clean: ## remove the virtualenv, caches and dist/
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(DIST)
