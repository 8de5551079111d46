# make test   set up from nothing (.venv, dependencies, build) and run the test suite
# make demo   the main job: train a detector with fused losses and ALWA on synthetic data
# make bench  the loss benchmarks on this machine
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
DEPS   := numpy pytest hypothesis pybind11 ninja "setuptools>=64" wheel tqdm matplotlib pillow pycocotools

.PHONY: test demo bench build venv cmake-check nvcc-check clean

# Reuse a torch the system Python already has (the venv then sees system packages); else
# install the pinned CPU build.
$(VENV)/.ready:
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
	  echo "reusing the importable torch"; $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  $(PYTHON) -m venv $(VENV) && $(PIP) install -q $(TORCH_SPEC); \
	fi
	$(PIP) install -q $(DEPS)
	@touch $@

venv: $(VENV)/.ready

build: venv
	$(PIP) install -q --no-build-isolation -e .

test: build
	$(PY) -m pytest -q

demo: build
	$(VENV)/bin/alwa-train train --out runs/demo

bench: build
	$(PY) -m benchmarks.bench_losses

# The same sources built by CMake against the installed torch, loaded with torch.ops.load_library.
cmake-check: venv
	cmake -S . -B cmake-build -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
	cmake --build cmake-build -j2
	$(PY) tests/cmake_smoke.py cmake-build/libalwa_ops.so

# The torch-free CUDA kernel headers compiled by nvcc for Hopper (no GPU needed).
nvcc-check:
	bash .ci/nvcc_check.sh

clean:
	rm -rf build cmake-build *.egg-info alwa_ext/_C*.so
