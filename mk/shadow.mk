# Shadow benchmark (issue 3); included by the main Makefile (which defines PY and setup).

.PHONY: bench-shadow

# Provisioning vs a plain pg_basebackup of a ~1 GB primary, replication lag per tier, commit
# latency with and without a shadow, lost acknowledged writes; provisioning again with the
# OS page cache dropped before each run (--uncached: root only, skipped and said otherwise).
# About 10 minutes on 2 cores; pass e.g. BENCH_SHADOW_ARGS=--quick for a smoke run.
BENCH_SHADOW_ARGS ?= --uncached
bench-shadow: setup
	$(PY) -m bench.shadow --output bench/results/shadow.json $(BENCH_SHADOW_ARGS)
