# Predictive Analytics Engine targets; included by the main Makefile (which defines PY and setup).

PAE_MODEL := models/artifacts/pae-default.txt

.PHONY: model eval bench-scoring

# Train the default failure model (synthetic fleet + ../shared/data/nab) into models/artifacts.
model: setup
	$(PY) -m models.training --output $(PAE_MODEL)

# Episode-level evaluation on NAB and a held-out synthetic fleet, with a windowed-Gaussian baseline.
eval: setup
	$(PY) -m bench.eval --output bench/results/eval.json

# Instance-scores per second per core; one thread for numpy's BLAS and for LightGBM.
bench-scoring: setup
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m bench.scoring --output bench/results/scoring.json
