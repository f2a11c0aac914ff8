# Fault-injection suite (issue 20); included by the main Makefile (which defines PY and setup).

.PHONY: chaos

# Every scenario of bench/chaos_scenarios.py on fresh namespace hosts under 150 writes/s, the
# primary-host crash five times; writes bench/results/chaos.json. Needs root (namespaces).
# About 10 minutes on 2 cores; CHAOS_ARGS="--only primary_host_crash --crash-runs 1" for one.
CHAOS_ARGS ?=
chaos: setup
	$(PY) -m bench.chaos --output bench/results/chaos.json $(CHAOS_ARGS)
