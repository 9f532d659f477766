# Developer entry points. A new user needs two: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST_REQS_EXCLUDE := ^(torch|torchvision|torchaudio|spandrel)([<>=~ ;]|$$)
STAMP := $(VENV)/.setup-stamp

.PHONY: setup demo test test-fast bench lint clean-host

setup: $(STAMP)
	@$(PY) scripts/setup_host.py

$(STAMP): requirements.txt requirements-dev.txt scripts/setup_host.py Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@# torch first, pinned: the CPU build lies on this machine's disk.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "torch==$${TORCH_VERSION:-2.13.0}"
	@$(PY) scripts/setup_host.py
	@grep -vE '$(HOST_REQS_EXCLUDE)' "$$(cat .host/host_path)/requirements.txt" | grep -v '^#' | grep -v '^$$' > .host/host-requirements.txt
	@$(PY) -m pip install --quiet -r .host/host-requirements.txt -r requirements.txt -r requirements-dev.txt
	@touch $(STAMP)

demo: setup
	@$(PY) scripts/demo.py

test: setup
	@node --test js/tests/ 2>/dev/null || test ! -d js/tests
	@$(PY) -m pytest -q tests

test-fast: setup
	@$(PY) -m pytest -q tests -m "not server and not browser"

bench: setup
	@$(PY) tests/benchmarks/run.py

lint: setup
	@$(PY) -m ruff check .

clean-host:
	rm -rf .host $(VENV)
