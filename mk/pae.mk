# Predictive Analytics Engine targets; included by the main Makefile (which defines PY and setup).

PAE_MODEL := models/artifacts/pae-default.txt

.PHONY: model eval bench-scoring bench-baselines

# Train the default failure model (ASD servers + NAB series from ../shared/data, plus the synthetic
# fleet at a weight chosen on the real series) into models/artifacts. About a minute.
model: setup
	nice -n 10 $(PY) -m models.training --output $(PAE_MODEL)

# ASD leave-server-out, NAB leave-series-out and a held-out synthetic fleet, beside the
# windowed-Gaussian baseline and a random-score control (about 30 minutes on 2 cores).
eval: setup
	nice -n 10 $(PY) -m bench.eval --output bench/results/eval.json

# Instance-scores per second per core; one thread for numpy's BLAS and for LightGBM.
bench-scoring: setup
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m bench.scoring --output bench/results/scoring.json

# The measurement behind models/baselines.py's choice of library (needs the baseline-study extra).
bench-baselines: setup
	$(PY) -m pip install --quiet -e '.[baseline-study]'
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 nice -n 10 $(PY) -m bench.baseline_libraries --output bench/results/baseline_libraries.json
