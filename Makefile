# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := -e proto -e libs/common -e services/synth -e services/envhost -e services/rollout -e services/trainer -e '.[dev]'
PYPROJECTS := pyproject.toml proto/pyproject.toml libs/common/pyproject.toml $(wildcard services/*/pyproject.toml) constraints.txt

.PHONY: install system-deps demo up test compose-test lint typecheck schemas docs-config check-generated clean

# System packages the stack runs on (redis-server for the embedded runtime and the tests).
system-deps:
	@bash scripts/system-deps.sh

$(BIN)/.installed: $(PYPROJECTS)
	$(MAKE) system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt $(PACKAGES)
	# BFCL's data, executable backends and checker; its declared dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps bfcl-eval==2026.3.23
	touch $@

# The embedded policy server (vLLM's CPU build) lives in a virtual environment of its own.
.venv-vllm/.installed: scripts/vllm-venv.sh
	bash scripts/vllm-venv.sh .venv-vllm
	touch $@

# MCP clients nobody here wrote (TypeScript SDK v1 and v2, MCP Inspector), pinned, for the tests.
tests/mcp_clients/node_modules/.installed: tests/mcp_clients/package.json tests/mcp_clients/package-lock.json
	cd tests/mcp_clients && npm ci --no-audit --no-fund
	touch $@

install: $(BIN)/.installed .venv-vllm/.installed tests/mcp_clients/node_modules/.installed

demo: install
	$(BIN)/astra demo

up: install
	$(BIN)/astra up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy proto/src libs/common/src services/synth/src services/envhost/src services/rollout/src services/trainer/src src tests bench

test: install lint
	$(BIN)/pytest

# The compose deployment on a real Docker engine (installed and started by the script, root
# and Debian's packages needed): every image built, the stack run, scaled, then removed.
compose-test: install
	bash scripts/compose-test.sh

# Generated files: JSON Schemas of the contracts and the configuration reference.
schemas: install
	$(BIN)/python -m astra_proto.schemas write proto/schemas

docs-config: install
	$(BIN)/python tests/config_docs.py write docs/configuration.md

clean:
	rm -rf $(VENV) .venv-vllm .astra .pytest_cache .mypy_cache .ruff_cache
