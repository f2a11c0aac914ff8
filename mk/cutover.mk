# Cutover saga targets; included by the main Makefile (which defines PY and setup).

.PHONY: bench-cutover

# 20 planned cutovers back and forth under ~150 write tx/s through HAProxy, then one kill -9
# failover; writes bench/results/cutover.json.
bench-cutover: setup
	$(PY) -m bench.cutover --cutovers 20 --output bench/results/cutover.json
