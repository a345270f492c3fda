# Two entry points, both idempotent on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TOOLS  := tools
KENLM_BIN := $(TOOLS)/kenlm/bin
export PATH := $(abspath $(KENLM_BIN)):$(PATH)

.PHONY: setup demo reproduce test test-all bench clean

setup: $(VENV)/.installed $(TOOLS)/.system-deps $(KENLM_BIN)/lmplz

# torch first, from the CPU build pip finds locally; GPU users install their CUDA build of torch
# into .venv before running make (the range in setup.py then installs nothing more).
$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

$(TOOLS)/.system-deps: scripts/install_system_deps.sh
	bash scripts/install_system_deps.sh
	mkdir -p $(TOOLS) && touch $@

$(KENLM_BIN)/lmplz: $(TOOLS)/.system-deps $(VENV)/.installed
	bash scripts/build_kenlm_tools.sh $(TOOLS)/kenlm $(PY)
	touch $@

# the letters table (log-mel, wav2vec, Gumbel, Gumbel + BERT) on the embedded corpus; resumable
demo: setup
	$(PY) -m fairseq_vqw2v.reproduce --out results --demo

# every row of the paper's tables on the embedded corpus; reuses what `make demo` ran
reproduce: setup
	$(PY) -m fairseq_vqw2v.reproduce --out results

# on every core (pytest-xdist): each test writes only under its own tmp_path
test: setup
	$(PY) -m pytest -n auto -m "not slow" tests

test-all: setup
	$(PY) -m pytest tests

bench: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(TOOLS) results
