# The README's two commands: `make run` (set up and start the service) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint typecheck unit bench redis clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# First run writes a random webhook secret to .env (never an insecure default).
.env:
	@$(PYTHON) -c "import secrets; print('REVIEWBOT_WEBHOOK_SECRET=' + secrets.token_hex(32))" > .env
	@echo "reviewbot: wrote a new webhook secret to .env: paste it into your GitHub App's webhook settings"

run: $(STAMP) .env
	set -a && . ./.env && set +a && exec $(BIN)/reviewbot serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy

redis:
	@bash scripts/ensure-redis.sh

unit: $(STAMP) redis
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP) redis
	$(BIN)/python bench/bench_review.py
	$(BIN)/python bench/bench_service.py
	$(BIN)/python bench/bench_load.py
	$(BIN)/python bench/bench_snapshots.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
