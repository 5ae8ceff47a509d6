# make run    set everything up (virtualenv, dependencies, the compiled op) and run the main job
# make test   set everything up and run the test suite
# make test-fast  the suite without the tests marked slow (under two minutes on 2 cores)
# make test-determinism  the determinism, resume and fault-injection tests alone
# make lint   ruff (pyproject.toml) on the Python tree, clang-format (.clang-format) on csrc/
# make bench  the benchmarks (op, pipeline, training)
# make build  recompile the op (after the installed TensorFlow changed)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS := $(VENV)/.deps-installed
OP := rethinkgen_tf/ops/_build_info.json
SOURCES := setup.py $(wildcard csrc/*.cc csrc/*.h csrc/*.py csrc/rethinkgen/*)
# What `make run` runs; override, e.g. make run ARGS="--model=inception --corrupt=0.5"
ARGS ?= --model=mlp_1x512 --corrupt=0.5

.PHONY: setup build run test test-fast test-determinism lint bench clean

setup: $(OP)

$(DEPS): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(DEPS)

$(OP): $(DEPS) $(SOURCES)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	test -f $(OP)

build: $(DEPS)
	rm -f $(OP)
	$(MAKE) $(OP)

run: setup
	$(PY) -m experiments.cifar $(ARGS)

test: setup
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

CXX_SOURCES := $(wildcard csrc/*.cc csrc/*.h csrc/rethinkgen/*.h csrc/rethinkgen/*.cuh)
lint: $(DEPS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/clang-format --dry-run --Werror $(CXX_SOURCES)

# Run by .ci/run with TF_ENABLE_ONEDNN_OPTS=0 and =1.
DETERMINISM := tests/test_train.py tests/test_faults.py tests/test_data_pipeline.py
test-determinism: setup
	$(PY) -m pytest -q $(DETERMINISM)

bench: setup
	$(PY) -m benchmarks.ops
	$(PY) -m benchmarks.pipeline
	$(PY) -m benchmarks.train

clean:
	rm -rf build *.egg-info rethinkgen_tf/ops/*.so $(OP)
