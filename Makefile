# Two commands do everything on a fresh machine:
#   make run    -- the harmful-content system end to end on an embedded data set
#   make test   -- the test suite (starts the servers it needs)
# Both create .venv on first use (Python 3.11, CPU torch on CPU machines).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED=0
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export MLFLOW_DISABLE_TELEMETRY=true
export TOKENIZERS_PARALLELISM=false

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_venv.sh
	PY=$(PY) VENV=$(VENV) bash scripts/setup_venv.sh
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mlsd run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check mlsd_ray tests jobs bench
	$(BIN)/ruff format --check mlsd_ray tests jobs bench
	$(BIN)/mypy mlsd_ray
	$(BIN)/mypy jobs
	$(BIN)/mypy bench
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) mlsd-work
