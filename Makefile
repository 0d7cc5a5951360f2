# Every target has a one-line description; `make help` lists them. CI runs `make test`.
PY ?= python3
SHELL := /bin/bash
EXAMPLE := examples/django_project
# The Rust test binaries link libpython; tell the loader where the running Python keeps it.
export LD_LIBRARY_PATH := $(shell $(PY) -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')"):$(LD_LIBRARY_PATH)

.PHONY: help install dev serve wheel test lint format test-rust test-python bench bench-seed bench-compress

# What `make serve` runs (tests/browser/ drives a browser through every link of the example's index
# page with exactly these flags): pages through WSGI, the Channels chat and the server-sent events
# through ASGI, static files from the core. One worker, because the chat's in-memory channel layer
# only reaches websockets in the same process (REDIS_URL lifts that; see the example's README).
SERVE_FLAGS := --django mysite --asgi-path /events/ --static-django --workers 1
# The published wheel: abi3 (CPython >= 3.10), manylinux2014 (glibc 2.17) by linking through zig,
# built with the `dist` profile (no debug info, stripped), and refused above WHEEL_MAX_BYTES.
WHEEL_TOOLS := 'maturin>=1.16,<2' 'ziglang>=0.17,<0.18'
WHEEL_MAX_BYTES := 2500000

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install:  ## build rsgi (release) into this Python, with the test dependencies
	$(PY) -m pip install -q -e '.[test]'

# The fast loop: the same editable install through maturin's build backend, with Cargo's dev profile
# (no LTO, incremental) and no isolated build environment. `maturin develop` wants a virtualenv.
dev:  ## build rsgi (debug, fast) into this Python; make install puts the release build back
	$(PY) -m pip install -q 'maturin>=1.8,<2'
	$(PY) -m pip install -q -e . --no-deps --no-build-isolation --config-settings=build-args=--profile=dev

serve:  ## install rsgi and serve the Django example (pages, chat, events, admin) on http://127.0.0.1:8000
	$(PY) -m pip install -q -e . -r $(EXAMPLE)/requirements.txt
	cd $(EXAMPLE) && $(PY) manage.py migrate --noinput && $(PY) manage.py collectstatic --noinput -v 0 \
		&& $(PY) manage.py createdemoadmin
	$(PY) -m rsgi $(SERVE_FLAGS) --chdir $(EXAMPLE) --bind 127.0.0.1:8000

wheel:  ## build the portable wheel (abi3, manylinux2014) and the sdist into dist/
	$(PY) -m pip install -q $(WHEEL_TOOLS)
	rm -f dist/rsgi-*.whl dist/rsgi-*.tar.gz
	$(PY) -m maturin build --profile dist --zig --compatibility manylinux2014 --out dist
	$(PY) -m maturin sdist --out dist
	@for f in dist/rsgi-*.whl; do \
		size=$$(stat -c %s "$$f"); \
		echo "$$f: $$size bytes (limit $(WHEEL_MAX_BYTES))"; \
		if [ "$$size" -gt $(WHEEL_MAX_BYTES) ]; then echo "error: the wheel is over $(WHEEL_MAX_BYTES) bytes" >&2; exit 1; fi; \
	done

test: install lint test-rust test-python  ## the whole suite: build, lint, Rust tests, pytest

lint:  ## rustfmt, clippy (warnings are errors), ruff, the _rsgi.pyi stub (stubtest), and the GIL-boundary check
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	$(PY) -m ruff check python tests bench examples
	$(PY) -m ruff format --check python tests bench examples
	$(PY) -m mypy.stubtest rsgi._rsgi  # python/rsgi/_rsgi.pyi against the installed extension
	@# Only src/bridge/ may release or wait for the GIL (see src/bridge/mod.rs).
	@! grep -rnE '\.detach\(|Python::attach|allow_threads' src --include=*.rs | grep -v '^src/bridge/'

format:  ## apply rustfmt and ruff's fixes
	cargo fmt
	$(PY) -m ruff format python tests bench examples
	$(PY) -m ruff check --fix python tests bench examples

test-rust:  ## Rust unit and integration tests
	@# The integration tests embed Python to read rsgi's defaults (tests/support/mod.rs).
	PYTHONHOME="$$($(PY) -c 'import sys; print(sys.base_prefix)')" PYTHONPATH=python cargo test --quiet

test-python:  ## pytest: real servers, real clients
	$(PY) -m pytest tests

bench:  ## side-by-side benchmark against every peer (~2 h; see bench/README.md for quicker runs)
	bash bench/setup.sh
	bench/.venv/bin/python bench/run.py

bench-seed:  ## the deployment guide's table reproduced: 4 workers, 100 and 1,000 connections, every stack (~35 min)
	BENCH_SKIP_WSLOAD=1 bash bench/setup.sh
	bench/.venv/bin/python bench/run.py --preset seed $(BENCH_ARGS)

.PHONY: bench-ws-idle
bench-ws-idle:  ## memory per idle websocket: 10,000 and 19,900 idle sockets on one worker, rsgi vs uvicorn, Granian, Daphne (~10 min)
	BENCH_SKIP_WSLOAD=1 bash bench/setup.sh
	bench/.venv/bin/python bench/ws_idle.py $(BENCH_ARGS)

.PHONY: bench-fanout
bench-fanout:  ## Channels group fan-out: 1,000 websockets, 2 workers, Redis; rsgi vs uvicorn and daphne (~8 min)
	BENCH_SKIP_WSLOAD=1 bash bench/setup.sh
	bench/.venv/bin/python bench/fanout.py $(BENCH_ARGS)

bench-compress:  ## issue #19's compression row: rsgi --compress vs gunicorn + GZipMiddleware vs nginx gzip (~15 min)
	BENCH_SKIP_WSLOAD=1 bash bench/setup.sh
	bench/.venv/bin/python bench/run.py --preset compress $(BENCH_ARGS)
