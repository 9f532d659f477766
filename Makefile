# Developer entry points. A new user needs two: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST_REQS_EXCLUDE := ^(torch|torchvision|torchaudio)([<>=~ ;]|$$)
STAMP := $(VENV)/.setup-stamp
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

# The second host: current upstream ComfyUI, unpacked from a source archive into .host/latest/ComfyUI, with its
# own environment .venv-latest (`make setup-latest`, `make test-latest`).
VENV_LATEST := .venv-latest
PY_LATEST := $(VENV_LATEST)/bin/python
STAMP_LATEST := $(VENV_LATEST)/.setup-stamp
COMFYUI_ARCHIVE ?= ../shared/hosts/ComfyUI-0.33.0.tar.gz
# ComfyUI 0.29 imports torchaudio at start-up (comfy/sd.py -> comfy/ldm/lightricks/vae/audio_vae.py, a plain
# `import torchaudio`, no fallback), so the set needs torchaudio. torchaudio 2.11.1 is a py3-none wheel built
# against torch's stable ABI and declares `torch>=2.11`: pip installs it beside the torch 2.14.1 / torchvision
# 0.29.1 pair that lies on this machine's disk (pip on Python 3.11 takes them locally, within /etc/xdg/pip's cap),
# so the only download is torchaudio's 1.8 MB. The alternative documented set (torch 2.9.1 + torchvision 0.24.1 +
# torchaudio 2.9.x) downloads about 7 GB of CUDA wheels, too much for CI. A CPU-only x86_64 torch that pairs with a
# registry torchvision and torchaudio is not on the registry (the CPU 2.13.0 file on disk does not load PyPI's
# torchvision). The pack's tests never call torchaudio; the host only needs it to import.
TORCH_SPEC_LATEST ?= torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.1

.PHONY: setup setup-latest browser-deps demo test test-latest tested-on test-fast bench gpu-check require-cuda lint clean-host

setup: $(STAMP)
	@$(PY) scripts/setup_host.py

$(STAMP): requirements.txt requirements-dev.txt scripts/setup_host.py Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@# torch first, pinned. ComfyUI 0.3.75 imports torchvision at start-up (comfy/ldm/cosmos), and
	@# PyPI's torchvision cannot load beside the CPU-only torch 2.13 file, so the pair that lies on
	@# this machine's disk is used (a CUDA build that also runs on CPU).
	@$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_SPEC)
	@$(PY) scripts/setup_host.py
	@grep -vE '$(HOST_REQS_EXCLUDE)' "$$(cat .host/host_path)/requirements.txt" | grep -v '^#' | grep -v '^$$' > .host/host-requirements.txt
	@$(PY) -m pip install --quiet -r .host/host-requirements.txt -r requirements.txt -r requirements-dev.txt
	@touch $(STAMP)

setup-latest: $(STAMP_LATEST)
	@COMFYUI_ARCHIVE='$(COMFYUI_ARCHIVE)' $(PY_LATEST) scripts/setup_host.py --latest

$(STAMP_LATEST): requirements.txt requirements-dev.txt scripts/setup_host.py Makefile $(wildcard $(COMFYUI_ARCHIVE))
	@test -f '$(COMFYUI_ARCHIVE)' || (echo "no ComfyUI archive at $(COMFYUI_ARCHIVE) (set COMFYUI_ARCHIVE)" >&2; exit 1)
	@test -x $(PY_LATEST) || $(PYTHON) -m venv $(VENV_LATEST)
	@$(PY_LATEST) -m pip install --quiet --upgrade pip
	@$(PY_LATEST) -c "import torch, torchvision, torchaudio" 2>/dev/null || $(PY_LATEST) -m pip install --quiet $(TORCH_SPEC_LATEST)
	@COMFYUI_ARCHIVE='$(COMFYUI_ARCHIVE)' $(PY_LATEST) scripts/setup_host.py --latest
	@grep -vE '$(HOST_REQS_EXCLUDE)' "$$(cat .host/latest/host_path)/requirements.txt" | grep -v '^#' | grep -v '^$$' > .host/latest/host-requirements.txt
	@$(PY_LATEST) -m pip install --quiet -r .host/latest/host-requirements.txt -r requirements.txt -r requirements-dev.txt
	@touch $(STAMP_LATEST)

# Browser tests drive Debian's chromium through Playwright (no browser download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

demo: setup
	@$(PY) scripts/demo.py

# --rootdir=tests: the repository root is the pack's package (an __init__.py with relative imports), and pytest
# imports it while collecting; with the repository as rootdir it names it after the checkout folder, which fails
# for folder names that are not Python identifiers (a clone into "comfyui-joint-attention": every test errors).
PYTEST := $(PY) -m pytest -q --rootdir=tests

test: setup browser-deps
	@$(PY) -m ruff check .
	@node --test tests/js/
	@$(PYTEST) tests --junitxml=.host/junit.xml
	@$(PY) scripts/tested_on.py --record --junit .host/junit.xml

# The same suite on the latest host (ruff and the JS unit tests do not depend on the host: `make test` runs them).
# JA_HOST=latest makes the tests boot .host/latest's ComfyUI (tests/support/ja_host.py).
test-latest: setup-latest browser-deps
	@env -u COMFYUI_PATH JA_HOST=latest $(PY_LATEST) -m pytest -q --rootdir=tests tests --junitxml=.host/latest/junit.xml
	@env -u COMFYUI_PATH JA_HOST=latest $(PY_LATEST) scripts/tested_on.py --record --junit .host/latest/junit.xml

# The "Tested on" table of docs/testing.md from the runs `make test` and `make test-latest` recorded under
# .host/tested_on, and the "Works with" table of docs/works-with.md from the composition tests' outcomes those runs
# recorded under .host/works_with.
tested-on:
	@$(PY) scripts/tested_on.py --docs
	@$(PY) scripts/works_with.py --docs

test-fast: setup
	@$(PYTEST) tests -m "not server and not browser"

bench: setup
	@$(PY) tests/benchmarks/run.py
	@$(PY) tests/benchmarks/canvas.py
	@$(PY) tests/benchmarks/region_lora.py

# On a machine with an NVIDIA GPU: tests/gpu, then the GPU benchmark (about 8 minutes together), which rewrites the
# GPU section of BENCHMARKS.md. Without CUDA it stops before anything runs (exit 2, a message saying why).
gpu-check: require-cuda setup
	@$(PY) tests/benchmarks/gpu.py --require-cuda
	@$(PYTEST) tests/gpu
	@$(PY) tests/benchmarks/gpu.py

# Checked first with the environment that is already there (a fresh clone has none yet: the check after setup).
require-cuda:
	@if [ -x $(PY) ]; then $(PY) tests/benchmarks/gpu.py --require-cuda; fi

lint: setup
	@$(PY) -m ruff check .

clean-host:
	rm -rf .host $(VENV) $(VENV_LATEST)
