# Two entry points for a fresh machine with Python 3.11+, make and git:
#   make demo   set up .venv from the lock and run the main job on the bundled example (offline)
#   make test   set up .venv from the lock and run the test suite, then the wheel check
# And for maintainers:
#   make lock          refresh requirements.lock from pyproject.toml (every extra, with hashes)
#   make test-latest   the suite against the newest releases, in .venv-latest (CI does not run it)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
UV_VERSION := 0.13.9
DEMO_DB ?= data/demo.db
export LITELLM_LOCAL_MODEL_COST_MAP = True

.PHONY: demo test venv lock test-latest bench wheel-check clean

# The locked set first (exact versions, hashes checked, nothing resolved), then zos itself
# without its dependencies, built with the locked hatchling.
$(BIN)/zos: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(BIN)/zos

venv: $(BIN)/zos

ZOS_DEMO = $(BIN)/zos --db $(DEMO_DB) --config examples/zos.toml

# The main job on the bundled example: ingest the export, see what is salient, run the night
# (decay, then every layer in order) with the offline reflector (no model is configured, and
# examples/zos.toml leaves [analysis] off: nothing is fetched or sent), list the insights, and
# end with Theo's memory card, what a bot would read about him.
demo: venv
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	$(ZOS_DEMO) init-db
	$(ZOS_DEMO) ingest examples/export
	$(ZOS_DEMO) salience top --limit 10
	$(ZOS_DEMO) nightly
	$(ZOS_DEMO) insights list
	$(ZOS_DEMO) insights about @theo

test: venv
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory wheel-check

# Build the wheel, install it with the same lock in a fresh virtual environment, run init-db
# and status from it.
wheel-check: venv
	rm -rf dist /tmp/zos-wheel-venv /tmp/zos-wheel-check.db
	$(BIN)/python -m build --wheel --no-isolation --outdir dist . >/dev/null
	$(PYTHON) -m venv /tmp/zos-wheel-venv
	/tmp/zos-wheel-venv/bin/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	/tmp/zos-wheel-venv/bin/pip install --quiet --no-deps dist/*.whl
	cd /tmp && /tmp/zos-wheel-venv/bin/zos --db /tmp/zos-wheel-check.db init-db
	cd /tmp && /tmp/zos-wheel-venv/bin/zos --db /tmp/zos-wheel-check.db status --json >/dev/null
	@echo "wheel check: built, installed with the lock in a fresh venv, init-db and status ran from it"

# uv writes the lock: every extra, universal markers for Python 3.11+, hashes for every file.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet uv==$(UV_VERSION)
	.venv-lock/bin/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
		--generate-hashes --quiet --output-file $(LOCK)

# The newest releases pyproject.toml's ranges admit: for hearing about drift early.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --upgrade pip
	.venv-latest/bin/pip install --quiet --upgrade -e '.[test]'
	.venv-latest/bin/python -m pytest -q

bench: venv
	$(BIN)/python benchmarks/bench_startup.py

clean:
	rm -rf $(VENV) .venv-lock .venv-latest dist data/demo.db*
