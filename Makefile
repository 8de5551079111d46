# make test               set up from nothing (.venv, dependencies, build) and run the test suite,
#                         the CUDA kernels executed on the host included
# make test-cuda-host     only the tests of the CUDA kernels and launchers executed on the host
#                         (tests/cuda_host/: needs the CUDA toolkit's headers, no GPU)
# make demo               the main job: RetinaNet + CIoU on synthetic data with fixed weights and with
#                         ALWA_2, side by side (about 2.5 minutes on 2 CPU cores, after the build)
# make experiments        the study "Does ALWA help?" (docs/experiments/, resumable; about 90 minutes)
# make bench              the loss benchmarks on this machine
# make bench-yolo         the YOLO loss stage against ultralytics' (in .venv-latest), 1 and 2 threads
# make cuda-build         the CUDA extension, compiled and linked against the latest torch (no GPU needed)
# make test-torch-latest  the whole suite again under the latest torch (with torchvision,
#                         ultralytics and mmengine, so the framework tests run too)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
DEPS   := numpy pytest hypothesis ninja "setuptools>=64" wheel tqdm matplotlib pillow pycocotools

# The second environment: the newest torch this machine has on disk (a CUDA 13.0 build, which
# imports and runs on a CPU), torchvision, and the frameworks alwa_ext.integrations adapts.
LATEST_VENV   := .venv-latest
LATEST_PY     := $(LATEST_VENV)/bin/python
LATEST_PIP    := $(LATEST_PY) -m pip
LATEST_TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
LATEST_EXTRAS := ultralytics mmengine
# The CUDA toolkit nvcc belongs to (nvcc on PATH may be a wrapper script outside it).
CUDA_HOME ?= $(shell nvcc --dryrun -c -x cu /dev/null 2>&1 | sed -n 's/^\#\$$ TOP=//p' | head -1)
TORCH_CUDA_ARCH_LIST ?= 9.0

.PHONY: test test-cuda-host cuda-host-build demo experiments experiments-report bench bench-yolo build venv venv-latest cuda-build test-torch-latest cmake-check nvcc-check clean

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

# The editable install (and the extension's build) again only when a source of the build changed.
BUILD_INPUTS := setup.py pyproject.toml $(shell find csrc -type f)
$(VENV)/.built: $(VENV)/.ready $(BUILD_INPUTS)
	$(PIP) install -q --no-build-isolation -e .
	@touch $@

build: $(VENV)/.built

# PYTEST_ARGS: more pytest arguments (.ci/run leaves out what its test-cuda-host step ran).
test: build cuda-host-build
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The test build that runs csrc/cuda/ on the host (again only what changed; skipped with a
# message where the CUDA toolkit's headers are missing, and the tests then skip).
cuda-host-build: build
	$(PY) tests/cuda_host/build.py

test-cuda-host: cuda-host-build
	$(PY) -m pytest -q -m cuda_host

demo: build
	$(VENV)/bin/alwa-train demo --out runs/demo --overwrite

# Runs under runs/study/ (a finished cell is reused, an interrupted one continued); results,
# tables and figures in docs/experiments/.
experiments: build
	$(PY) docs/experiments/run_study.py

experiments-report: venv
	$(PY) docs/experiments/study_report.py

bench: build
	$(PY) -m benchmarks.bench_losses

# Under the latest torch, where ultralytics is installed; -P: its installed alwa_ext.
bench-yolo: cuda-build
	$(LATEST_PY) -P benchmarks/bench_yolo.py --threads 1
	$(LATEST_PY) -P benchmarks/bench_yolo.py --threads 2

$(LATEST_VENV)/.ready:
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_PIP) install -q $(LATEST_TORCH_SPEC)
	$(LATEST_PIP) install -q $(DEPS) $(LATEST_EXTRAS)
	@touch $@

venv-latest: $(LATEST_VENV)/.ready

# A regular (not editable) install into the second environment: its _C does not replace the
# in-tree one that `make test` built against the pinned torch. setup.py keeps each torch's
# objects in their own build/ folder.
cuda-build: venv-latest
	@test -n "$(CUDA_HOME)" || { echo "cuda-build: no nvcc on PATH (set CUDA_HOME)"; exit 2; }
	CUDA_HOME=$(CUDA_HOME) FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$(TORCH_CUDA_ARCH_LIST)" \
	  $(LATEST_PIP) install -q --no-build-isolation --no-deps .
	$(LATEST_PY) -P tests/check_build.py --cuda

# -P: the current folder is not put on sys.path, so `import alwa_ext` is the installed build.
test-torch-latest: cuda-build
	$(LATEST_PY) -P -m pytest -q -p no:cacheprovider

# The same sources built by CMake against the installed torch, loaded with torch.ops.load_library.
cmake-check: venv
	cmake -S . -B cmake-build -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
	cmake --build cmake-build -j2
	$(PY) tests/cmake_smoke.py cmake-build/libalwa_ops.so

# The torch-free CUDA kernel headers compiled by nvcc for Hopper (no GPU needed).
nvcc-check:
	bash .ci/nvcc_check.sh

clean:
	rm -rf build cmake-build *.egg-info alwa_ext/_C*.so $(VENV)/.built
