# Every target has a one-line description; `make help` lists them. CI runs `make test`.
PY ?= python3
SHELL := /bin/bash
EXAMPLE := examples/django_project
# The Rust test binaries link libpython; tell the loader where the running Python keeps it.
export LD_LIBRARY_PATH := $(shell $(PY) -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')"):$(LD_LIBRARY_PATH)

.PHONY: help install serve test lint format test-rust test-python bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install:  ## build rsgi (release) into this Python, with the test dependencies
	$(PY) -m pip install -q -e '.[test]'

serve:  ## install rsgi and serve the Django example on http://127.0.0.1:8000
	$(PY) -m pip install -q -e . -r $(EXAMPLE)/requirements.txt
	cd $(EXAMPLE) && $(PY) manage.py migrate --noinput && $(PY) manage.py collectstatic --noinput -v 0
	$(PY) -m rsgi mysite.wsgi:application --chdir $(EXAMPLE) --bind 127.0.0.1:8000 --workers 2 --static-django

test: install lint test-rust test-python  ## the whole suite: build, lint, Rust tests, pytest

lint:  ## rustfmt, clippy (warnings are errors), ruff, and the GIL-boundary check
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	$(PY) -m ruff check python tests bench examples
	$(PY) -m ruff format --check python tests bench examples
	@# Only src/bridge/ may release or wait for the GIL (see src/bridge/mod.rs).
	@! grep -rnE '\.detach\(|Python::attach|allow_threads' src --include=*.rs | grep -v '^src/bridge/'

format:  ## apply rustfmt and ruff's fixes
	cargo fmt
	$(PY) -m ruff format python tests bench examples
	$(PY) -m ruff check --fix python tests bench examples

test-rust:  ## Rust unit and integration tests
	cargo test --quiet

test-python:  ## pytest: real servers, real clients
	$(PY) -m pytest tests

bench:  ## side-by-side benchmark against every peer (~1¾ h; see bench/README.md for quicker runs)
	bash bench/setup.sh
	bench/.venv/bin/python bench/run.py
