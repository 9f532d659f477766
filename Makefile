# Developer entry points. A new user needs two: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST_REQS_EXCLUDE := ^(torch|torchvision|torchaudio)([<>=~ ;]|$$)
STAMP := $(VENV)/.setup-stamp
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup browser-deps demo test test-fast bench lint clean-host

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
	@node --test js/tests/
	@$(PYTEST) tests

test-fast: setup
	@$(PYTEST) tests -m "not server and not browser"

bench: setup
	@$(PY) tests/benchmarks/run.py

lint: setup
	@$(PY) -m ruff check .

clean-host:
	rm -rf .host $(VENV)
