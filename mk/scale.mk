# Scale benchmark (issue 6); included by the main Makefile (which defines PY and setup).

.PHONY: bench-scale

# 1,000 protections on one worker and one dev server, on the "scale-double" platform (a bench-only
# stand-in answering provisioning, replication and metrics at once): worker and server CPU and
# RSS, Temporal actions per instance-hour in steady state, threshold crossing -> cutover start
# for 20 injected instances, time to protect all. About 12 minutes on 2 cores; pass e.g.
# BENCH_SCALE_ARGS=--quick (20 instances) for a smoke run. Writes bench/results/scale.json.
BENCH_SCALE_ARGS ?=
bench-scale: setup
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m bench.scale --output bench/results/scale.json $(BENCH_SCALE_ARGS)
