# facelab — two commands do everything on a fresh machine:
#   make book   [PROFILE=smoke|small|full]   build the HTML book (executes every chapter)
#   make test                                unit tests + every notebook under nbval at smoke
#                                            + the same training run twice gives the same numbers
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip prints one warning per missing local index folder on this machine; hide those lines.
QUIET_PIP := 2>&1 | { grep -v '^WARNING: Location' || true; }
PYTHON ?= python3.11
VENV ?= .venv
PROFILE ?= small
# The experiment `make reproducibility` runs twice at smoke (it trains for real: 3 batches, then
# scores the pose protocol); `facelab results diff` then compares the two results exactly.
REPRO_EXPERIMENT ?= squeezefaceposenet.train.squeezefaceposenet
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

# The local mirror of the datasets, when this checkout sits next to it (development, CI).
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(strip $(FACELAB_DATA)),)
  ifneq ($(wildcard $(SHARED_DATA)/README.md),)
    export FACELAB_DATA := $(SHARED_DATA)
  endif
endif

.PHONY: venv data book test unit notebooks reproducibility lock clean help

help:
	@echo "make book [PROFILE=smoke|small|full]  build the book into _build/html"
	@echo "make test                              run the test suite (unit + notebooks at smoke + reproducibility)"
	@echo "make reproducibility                   run $(REPRO_EXPERIMENT) twice at smoke, fail on any difference"

$(VENV)/.installed: pyproject.toml constraints.txt
	@t0=$$(date +%s); \
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "error: could not create $(VENV) with $(PYTHON) (Python 3.11 is required)"; exit 1; }; \
	$(PIP) install -q -c constraints.txt -e '.[reference,book,test]' $(QUIET_PIP) && \
	$(PIP) install -q --no-deps $$($(PY) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml','rb'))['tool']['facelab']['no-deps']))") $(QUIET_PIP) && \
	$(PY) -m facelab --version && \
	echo "environment ready in $$(( $$(date +%s) - t0 )) s ($$(du -sh $(VENV) | cut -f1))"
	@touch $@

venv: $(VENV)/.installed

data: venv
	$(PY) -m facelab data prepare --profile $(PROFILE)

book: venv data
	$(PY) -m facelab book build --profile $(PROFILE)

unit: venv
	$(PY) -m pytest -q tests; rc=$$?; [ $$rc -eq 5 ] && { echo "error: pytest collected no tests"; exit 1; }; exit $$rc

notebooks: venv
	rm -rf .nbval && $(PY) -m facelab book parameterize --profile smoke --out .nbval
	$(PY) -m pytest -q --nbval-lax --nbval-cell-timeout=600 -p no:cacheprovider .nbval; \
	rc=$$?; [ $$rc -eq 5 ] && { echo "error: nbval collected no notebooks"; exit 1; }; exit $$rc

# Needs the smoke data prepared (`make data PROFILE=smoke`; `make test` does it first).
reproducibility: venv
	@t0=$$(date +%s); d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	for run in a b; do \
	  $(PY) -m facelab run $(REPRO_EXPERIMENT) --profile smoke --results-dir "$$d/$$run" > "$$d/$$run.log" 2>&1 \
	    || { cat "$$d/$$run.log"; echo "error: run $$run of $(REPRO_EXPERIMENT) failed"; exit 1; }; \
	done && \
	$(PY) -m facelab results diff "$$d/a" "$$d/b"; rc=$$?; \
	echo "make reproducibility: $(REPRO_EXPERIMENT) twice at smoke, $$(( $$(date +%s) - t0 )) s, exit $$rc"; exit $$rc

test: venv
	@t0=$$(date +%s); $(MAKE) --no-print-directory data PROFILE=smoke && \
	$(MAKE) --no-print-directory unit && $(MAKE) --no-print-directory reproducibility && \
	$(MAKE) --no-print-directory notebooks; rc=$$?; \
	echo "make test: $$(( $$(date +%s) - t0 )) s, exit $$rc"; exit $$rc

lock: venv
	{ echo "# Full pins of every package in the facelab environment (pip install -c constraints.txt)."; \
	  echo "# Regenerate with: make lock   (after changing pins in pyproject.toml)"; \
	  $(PIP) freeze --exclude-editable | grep -v -E '^facelab'; } > constraints.txt

clean:
	rm -rf _build .nbval .pytest_cache
