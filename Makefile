# The README's two commands: `make lab` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
SEMGREP_VENV := .venv-semgrep
SEMGREP_STAMP := $(SEMGREP_VENV)/.installed
LAB_ARGS ?=
# Jupyter refuses to run as root (containers, CI boxes) unless told it is meant.
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root,)
PYTEST_ARGS ?=
BOOK_ARGS ?=
NBVAL_ARGS ?=

.PHONY: install lab test test-notebooks bench book book-instructor clean

install: $(STAMP) $(CHECKOV_STAMP) $(SEMGREP_STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $(STAMP)

# checkov pins old networkx/packaging/boto3: it gets its own virtualenv, used only by the manifest check.
$(CHECKOV_STAMP):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "checkov==3.3.30"
	@touch $(CHECKOV_STAMP)

# semgrep pins an old OpenTelemetry that the services' FastAPI refuses: its own virtualenv too (cloudmart scan).
$(SEMGREP_STAMP):
	@test -x $(SEMGREP_VENV)/bin/python || $(PYTHON) -m venv $(SEMGREP_VENV)
	$(SEMGREP_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SEMGREP_VENV)/bin/python -m pip install --quiet "semgrep==1.185.0"
	@touch $(SEMGREP_STAMP)

# CloudMart starts before JupyterLab and stops when it exits (also on Ctrl-C).
# COURSE_LANG=ko: the Korean learner notebooks (.lab/ko, from locale/ko) in JupyterLab's Korean language pack.
LAB_DIR := $(if $(filter ko,$(COURSE_LANG)),.lab/ko/notebooks,notebooks)
LAB_ENV := $(if $(filter ko,$(COURSE_LANG)),JUPYTERLAB_SETTINGS_DIR=.lab/ko/settings,)
lab: install
	$(if $(filter ko,$(COURSE_LANG)),$(BIN)/python -m course_i18n.notebooks .lab/ko/notebooks --lang ko --settings-dir .lab/ko/settings &&,) \
	$(BIN)/cloudmart up && { trap '$(BIN)/cloudmart down' EXIT INT TERM; \
		$(LAB_ENV) $(BIN)/jupyter lab --notebook-dir=$(LAB_DIR) $(ROOT_ARGS) $(LAB_ARGS); }

test: install
	$(BIN)/python -m pytest --durations=25 -rs $(PYTEST_ARGS)
	$(MAKE) test-notebooks

# Every notebook under nbval against one local CloudMart, stopped afterwards even on failure.
test-notebooks: install
	trap '$(BIN)/cloudmart down' EXIT; $(BIN)/cloudmart up && \
	$(BIN)/python -m pytest --nbval notebooks --nbval-sanitize-with notebooks/nbval_sanitize.cfg \
		-p no:cacheprovider --durations=0 $(NBVAL_ARGS)

# The course as a site: book/_build/html/ (offline assets from book/package-lock.json via npm ci;
# notebook execution cached in book/_build/.jupyter_cache; BOOK_ARGS=--no-live keeps live outputs).
book: install
	$(BIN)/python book/build.py $(BOOK_ARGS)

# The instructor edition (solutions, instructor notes, book/instructor/ guides): book/_build/html-instructor/.
book-instructor: install
	$(BIN)/python book/build.py --edition instructor $(BOOK_ARGS)

bench: install
	$(BIN)/python tests/benchmarks/sim_engines.py --json
	$(BIN)/python tests/benchmarks/local_target.py --json

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(SEMGREP_VENV) .pytest_cache

environment.yml: pyproject.toml
	$(PYTHON) scripts/sync_environment.py
