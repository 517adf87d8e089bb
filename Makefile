# Two entry points that work on a fresh Debian machine: `make demo` and `make test`.
# Each creates .venv when missing and installs the project with everything it needs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck contracts unit bench sysdeps venv compiled clean protos

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if ! $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null; \
		else echo "need python3-venv (apt-get install python3-venv)"; exit 1; fi; \
	fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -U pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,hw]'
	@touch $(STAMP)

# System packages the real-component tests need. Never kubernetes-client: kubectl is /usr/bin/kubectl.
sysdeps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		if ! command -v ovs-vswitchd >/dev/null || ! command -v ovsdb-server >/dev/null || ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
			echo "installing openvswitch-switch chromium chromium-driver"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openvswitch-switch iproute2 chromium chromium-driver >/dev/null; \
		fi; \
	else echo "sysdeps: not root or no apt-get; real-component tests will skip (or fail under DPF_REQUIRE_REAL=1)"; fi

# The core's hot modules compiled with mypyc (dpf_core/compiled.py), rebuilt only when their sources changed.
# Without a C compiler and Python headers the pure-Python core runs: same results, ~10% more CPU.
compiled: venv
	@$(BIN)/python -m dpf_core.build_compiled --if-stale || echo "compiled: not built; the pure-Python core runs"

demo: venv compiled
	$(BIN)/dpf validate samples/*.yaml
	$(BIN)/dpf run scenarios/quickstart.yaml --report out/quickstart-report.json

lint: venv
	$(BIN)/ruff check dpf_core dpf_sim dpf_hw dpf_cli tests benchmarks

typecheck: venv
	$(BIN)/mypy dpf_core

contracts: venv
	$(BIN)/lint-imports

unit: venv compiled
	$(BIN)/pytest -q -p no:cacheprovider --benchmark-disable

test: venv sysdeps lint typecheck contracts unit

bench: venv compiled
	$(BIN)/pytest -q benchmarks -o 'python_files=bench_*.py' --benchmark-only --benchmark-columns=min,mean,ops,rounds

# Regenerate the gRPC stubs from dpf_hw/proto/*.proto (the generated files are checked in).
protos: venv
	$(BIN)/python -m dpf_hw.proto.generate

clean:
	rm -rf $(VENV) out build .pytest_cache .mypy_cache .ruff_cache
