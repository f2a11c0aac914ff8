# ShadowShift — the two commands a newcomer needs are `make demo` and `make test`.
# Both do all set-up first; set-up is idempotent and a second run rebuilds nothing.

SHELL := bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
PASSPHRASE := .state/pulumi-passphrase
# The key that encrypts workflow payloads (docs/security.md); `make worker` and
# `make codec-server` use it unless SHADOWSHIFT_PAYLOAD_KEY_FILE or _KEYS is already set.
PAYLOAD_KEYS := .state/payload-keys
WITH_PAYLOAD_KEYS := $(if $(SHADOWSHIFT_PAYLOAD_KEYS)$(SHADOWSHIFT_PAYLOAD_KEY_FILE),,SHADOWSHIFT_PAYLOAD_KEY_FILE=$(CURDIR)/$(PAYLOAD_KEYS))
export PATH := $(CURDIR)/.venv/bin:$(CURDIR)/.tools/bin:$(CURDIR)/scripts/bin:$(PATH)
export PULUMI_SKIP_UPDATE_CHECK := true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION := true

.PHONY: setup python-deps pulumi system-packages test lint unit histories demo worker codec-server clean help

help:
	@echo "make demo   - set up everything and run the end-to-end demo"
	@echo "make test   - set up everything and run every test (lint included)"
	@echo "make unit   - lint and the tests that need no server (under a minute)"
	@echo "make setup  - only the set-up: .venv, temporal CLI, Pulumi CLI, PostgreSQL, HAProxy"
	@echo "make worker - run a worker against SHADOWSHIFT_TEMPORAL_ADDRESS"
	@echo "make codec-server - decode encrypted payloads for the Web UI / temporal CLI"

setup: python-deps pulumi system-packages $(PASSPHRASE) $(PAYLOAD_KEYS)

python-deps: $(VENV_STAMP)

$(VENV_STAMP):
	@command -v python3.11 >/dev/null || { echo "error: python3.11 is required (install Python 3.11 and rerun)" >&2; exit 2; }
	@test -x $(PY) || python3.11 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f .venv/.installed-* && touch $@

pulumi:
	@bash scripts/build-pulumi.sh

system-packages:
	@bash scripts/setup-system.sh

$(PASSPHRASE):
	@mkdir -p .state && umask 077 && $(PY) -c 'import secrets; print(secrets.token_urlsafe(32))' > $@

# Generated once, never overwritten: losing it makes every encrypted history unreadable.
$(PAYLOAD_KEYS): | python-deps
	@mkdir -p .state && umask 077 && $(PY) -m workers.payload_keys new > $@.tmp && mv $@.tmp $@

lint: python-deps
	.venv/bin/ruff check .
	.venv/bin/mypy contracts workflows activities infra models workers bench
	.venv/bin/lint-imports

# Tests that need no real server or program and are quick (pytest markers ``integration`` and
# ``slow`` mark the others).
unit: python-deps
	@bash scripts/run-tests.sh -m "not integration and not slow" -q

test: setup lint
	@bash scripts/kube-tools-background.sh
	@bash scripts/run-tests.sh --durations=25

# Record the workflow histories the replay tests replay (commit them): when a workflow change
# is meant to change what workflows record. See tests/workflows/record_histories.py.
histories: setup
	@bash scripts/run-tests.sh tests/workflows/record_histories.py -q -p no:cacheprovider

# The end-to-end demo (about 8 minutes): DEMO_ARGS="--trace synthetic --healthy-hours 4 --threshold 60"
# replays the synthetic disk degradation in about 3.
DEMO_ARGS ?=
demo: setup
	$(PY) -m workers.demo $(DEMO_ARGS)

worker: setup
	$(WITH_PAYLOAD_KEYS) $(PY) -m workers.main

codec-server: setup
	$(WITH_PAYLOAD_KEYS) $(PY) -m workers.cli codec-server --cors-origin http://localhost:8233

clean:
	rm -rf .state demo-out .pytest_cache .mypy_cache .ruff_cache

-include $(wildcard mk/*.mk)
