# secure-mail-api: set-up, demo, tests. Every target creates the virtualenv first if needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo dev test test-fast fuzz lint bench proof policy-check clean package lock lock-upgrade lock-check audit

# The dev environment installs exactly requirements/dev.lock and resolves nothing, so no package
# released after the lock can change or break it: the venv's own pip (whatever `python3 -m venv`
# brings) installs only the pinned installer and build backend (requirements/bootstrap.lock,
# --no-deps --require-hashes); uv installs the lock (sync: nothing more, nothing less, hashes
# checked) and the project in editable mode with that build backend; scripts.verify_install then
# proves the venv equals the lock and every requirement is met. A failed step leaves no stamp.
$(STAMP): pyproject.toml requirements/dev.lock requirements/bootstrap.lock
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements/bootstrap.lock
	$(BIN)/uv pip sync --quiet --python $(BIN)/python --require-hashes requirements/dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(BIN)/python -m scripts.verify_install requirements/dev.lock --allow secure-mail-api
	touch $(STAMP)

install: $(STAMP)            ## create .venv and install the project with its dev tools (OpenBao, moto)

browser:                     ## Debian's chromium for the HTML report's browser test (as root, only if missing)
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else echo "browser: chromium not installed and not root; the browser test will skip" >&2; fi

package: $(STAMP)            ## reproducible Lambda zips + CycloneDX SBOMs in dist/ (prints sha256 and sizes)
	$(BIN)/python -m scripts.build_lambda

lock: $(STAMP)               ## recompile requirements/*.lock (hashes) after a dependency change
	$(BIN)/python -m scripts.lock

lock-upgrade: $(STAMP)       ## move every pin in requirements/*.lock to the newest allowed version
	$(BIN)/python -m scripts.lock --upgrade

lock-check: $(STAMP)         ## fail if a lock file is out of date with pyproject.toml / mail-handler.in
	$(BIN)/python -m scripts.lock --check

audit: $(STAMP)              ## pip-audit every lock file (needs the network; exit 3 when the database is unreachable)
	$(BIN)/python -m scripts.audit

demo: $(STAMP)               ## the main job on the embedded stack (local OpenBao + AWS emulator)
	$(BIN)/python -m rotation.dev demo

dev: $(STAMP)                ## local mail API on loopback (dev gateway + embedded stack); Ctrl-C stops it
	env -u AWS_ENDPOINT_URL $(BIN)/python -m rotation.dev gateway

test: $(STAMP) browser       ## lint (ruff, mypy), then the whole suite
	$(BIN)/ruff check rotation infra policies tests bench examples scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile

test-fast: $(STAMP) browser  ## skip the slow-marked tests
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile -m "not slow"

fuzz: $(STAMP)               ## property-based tests of every parser of outside input, large budget (HYPOTHESIS_PROFILE=deep)
	HYPOTHESIS_PROFILE=deep $(BIN)/python -m pytest -q -p no:cacheprovider -m property

lint: $(STAMP)               ## ruff, then mypy ([tool.mypy] in pyproject.toml: rotation/ infra/ policies/, strict for rotation.client)
	$(BIN)/ruff check rotation infra policies tests bench examples scripts
	$(BIN)/mypy

bench: $(STAMP)              ## fleet figures beside their targets (bench/fleet_bench.py; sizes are flags)
	$(BIN)/python bench/fleet_bench.py $(BENCH_ARGS)

proof: $(STAMP)              ## zero-downtime proof: 60 s of traffic at 60 req/s while keys rotate and rotators die
	$(BIN)/python bench/zero_downtime.py --seconds 60 --rate 60 --kills 3

policy-check: $(STAMP)       ## the CrossGuard pack over the infra program, offline (no Pulumi CLI)
	$(BIN)/python -m policies.check --config policies/pack/config/dev.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .dev-stack build dist
