# The two commands of README.md: `make demo` runs the product, `make test` runs every check.
.PHONY: demo test setup setup-dev services lint typecheck pytest bench clean

UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PYTEST_ARGS ?=

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"


setup: $(UV)
	$(UV) sync --locked --inexact

setup-dev: $(UV)
	$(UV) sync --locked --all-extras
	scripts/node-tools.sh

## Run the product on its embedded default: SQLite, encrypted local files, in-process tasks.
demo: setup
	.venv/bin/enclave demo

services:
	scripts/services.sh

lint: setup-dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: setup-dev
	.venv/bin/mypy infra access consent enclave dp_queries

pytest: setup-dev services
	.venv/bin/pytest $(PYTEST_ARGS)

## Lint, type checks and the whole test suite against the real services.
test: setup-dev services lint typecheck pytest

bench: setup-dev services
	.venv/bin/python -m bench.run

clean:
	rm -rf .venv .tools var .pytest_cache .mypy_cache .ruff_cache
