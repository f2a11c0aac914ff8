# Feedback-loop targets; included by the main Makefile (which defines PY and setup).

.PHONY: bench-retrain

# A production-size retraining run and a shuffled-label control against the shipped model,
# plus the cost of hot reload; writes bench/results/retraining.json (a few minutes).
bench-retrain: setup
	OPENBLAS_NUM_THREADS=1 $(PY) -m bench.retraining --output bench/results/retraining.json
