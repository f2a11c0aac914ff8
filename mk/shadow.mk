# Shadow benchmark (issue 3); included by the main Makefile (which defines PY and setup).

.PHONY: bench-shadow bench-shadow-local bench-shadow-hosts bench-shadow-sizes

# Provisioning vs a plain pg_basebackup of a ~1 GB primary, replication lag per tier, commit
# latency with and without a shadow, lost acknowledged writes; provisioning again with the
# OS page cache dropped before each run (--uncached: root only, skipped and said otherwise).
# About 10 minutes on 2 cores; pass e.g. BENCH_SHADOW_ARGS=--quick for a smoke run.
BENCH_SHADOW_ARGS ?= --uncached
bench-shadow: bench-shadow-local bench-shadow-hosts

bench-shadow-local: setup
	$(PY) -m bench.shadow --output bench/results/shadow.json $(BENCH_SHADOW_ARGS)

# The same provisioning on two namespace hosts (the copy by the shadow host's agent, Pulumi on
# the control side alongside it) against a plain pg_basebackup between the hosts. About 3
# minutes for 1 GB and 5 rounds; root only (it creates network namespaces).
BENCH_SHADOW_HOSTS_ARGS ?= --size-gb 1.0 --repeats 5
bench-shadow-hosts: setup
	$(PY) -m bench.shadow_hosts --output bench/results/shadow_hosts.json $(BENCH_SHADOW_HOSTS_ARGS)

# provision_ratio for primaries of 1, 2 and 4 GB (one fresh primary each, 3 rounds): from which
# size the ratio meets its goal on this machine. About 8 minutes; needs ~3x the largest size free.
BENCH_SHADOW_SIZES_ARGS ?=
bench-shadow-sizes: setup
	$(PY) -m bench.shadow_sizes --output bench/results/shadow_sizes.json $(BENCH_SHADOW_SIZES_ARGS)
