# Targets match the README. Every target first makes .venv match uv.lock.
.PHONY: setup lock repro test bench

setup:
	bash scripts/setup-env.sh

# Re-resolve uv.lock after changing the dependencies in pyproject.toml (needs PyPI), then sync.
lock:
	bash scripts/setup-env.sh lock

# The whole pipeline with default params (README command 1).
repro: setup
	. .venv/bin/activate && dvc repro

# The tests (README command 2; .ci/run).
test: setup
	.venv/bin/python -m pytest -n 2 --dist loadfile

# The benchmark: prepares the data if needed, then bench/run.py (about 27 minutes on 2 cores).
bench: setup
	. .venv/bin/activate && dvc repro add_noise && python bench/run.py
