# secure-mail-api: set-up, demo, tests. Every target creates the virtualenv first if needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo dev test test-fast lint bench proof policy-check clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)            ## create .venv and install the project with its dev tools (OpenBao, moto)

browser:                     ## Debian's chromium for the HTML report's browser test (as root, only if missing)
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else echo "browser: chromium not installed and not root; the browser test will skip" >&2; fi

demo: $(STAMP)               ## the main job on the embedded stack (local OpenBao + AWS emulator)
	$(BIN)/python -m rotation.dev demo

dev: $(STAMP)                ## local mail API on loopback (dev gateway + embedded stack); Ctrl-C stops it
	env -u AWS_ENDPOINT_URL $(BIN)/python -m rotation.dev gateway

test: $(STAMP) browser       ## lint, then the whole suite
	$(BIN)/ruff check rotation infra policies tests bench examples
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile

test-fast: $(STAMP) browser  ## skip the slow-marked tests
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check rotation infra policies tests bench examples

bench: $(STAMP)              ## rotation throughput vs. the bare call sequence and AWS's rate limits
	$(BIN)/python bench/rotation_bench.py

proof: $(STAMP)              ## zero-downtime proof: 60 s of traffic at 60 req/s while keys rotate and rotators die
	$(BIN)/python bench/zero_downtime.py --seconds 60 --rate 60 --kills 3

policy-check: $(STAMP)       ## the CrossGuard pack over the infra program, offline (no Pulumi CLI)
	$(BIN)/python -m policies.check --config policies/pack/config/dev.json

clean:
	rm -rf $(VENV) .pytest_cache .dev-stack
