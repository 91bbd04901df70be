# Two entry points for a fresh machine with Python 3.11+ and make:
#   make demo   set up .venv and run the main job on the bundled example (offline)
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DB ?= data/demo.db
export LITELLM_LOCAL_MODEL_COST_MAP = True

.PHONY: demo test venv bench wheel-check clean

$(BIN)/zos: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(BIN)/zos

venv: $(BIN)/zos

ZOS_DEMO = $(BIN)/zos --db $(DEMO_DB) --config examples/zos.toml

# The main job on the bundled example: ingest the export, see what is salient, reflect on
# the users with the offline reflector (no model is configured), list the insights.
demo: venv
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	$(ZOS_DEMO) init-db
	$(ZOS_DEMO) ingest examples/export
	$(ZOS_DEMO) salience top --limit 10
	$(ZOS_DEMO) reflect --layer user
	$(ZOS_DEMO) insights list

test: venv
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory wheel-check

# Build the wheel, install it in a fresh virtual environment, run init-db from it.
wheel-check: venv
	rm -rf dist /tmp/zos-wheel-venv /tmp/zos-wheel-check.db
	$(BIN)/python -m build --wheel --outdir dist . >/dev/null 2>&1
	$(PYTHON) -m venv /tmp/zos-wheel-venv
	/tmp/zos-wheel-venv/bin/pip install --quiet dist/*.whl
	cd /tmp && /tmp/zos-wheel-venv/bin/zos --db /tmp/zos-wheel-check.db init-db
	cd /tmp && /tmp/zos-wheel-venv/bin/zos --db /tmp/zos-wheel-check.db status --json >/dev/null
	@echo "wheel check: built, installed in a fresh venv, init-db and status ran from it"

bench: venv
	$(BIN)/python benchmarks/bench_startup.py

clean:
	rm -rf $(VENV) dist data/demo.db*
