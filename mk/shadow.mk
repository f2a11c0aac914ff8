# Shadow benchmark (issue 3); included by the main Makefile (which defines PY and setup).

.PHONY: bench-shadow bench-shadow-sizes

# Provisioning vs a plain pg_basebackup of a ~1 GB primary, replication lag per tier, commit
# latency with and without a shadow, lost acknowledged writes; provisioning again with the
# OS page cache dropped before each run (--uncached: root only, skipped and said otherwise).
# About 10 minutes on 2 cores; pass e.g. BENCH_SHADOW_ARGS=--quick for a smoke run.
BENCH_SHADOW_ARGS ?= --uncached
bench-shadow: setup
	$(PY) -m bench.shadow --output bench/results/shadow.json $(BENCH_SHADOW_ARGS)

# provision_ratio for primaries of 1, 2 and 4 GB (one fresh primary each, 3 rounds): from which
# size the ratio meets its goal on this machine. About 8 minutes; needs ~3x the largest size free.
BENCH_SHADOW_SIZES_ARGS ?=
bench-shadow-sizes: setup
	$(PY) -m bench.shadow_sizes --output bench/results/shadow_sizes.json $(BENCH_SHADOW_SIZES_ARGS)
