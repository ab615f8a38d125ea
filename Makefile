# Two set-up commands for a new user: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_DIR ?= demo-output

.PHONY: demo test lint bench install clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# The demo runs every stage, the DataLoader batch included, so it installs the torch extra (CPU pin in constraints.txt).
$(VENV)/.installed-base: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e '.[torch]'
	touch $@

$(VENV)/.installed-test: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e '.[test,torch]'
	touch $@ $(VENV)/.installed-base

install: $(VENV)/.installed-base

demo: $(VENV)/.installed-base
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/owa-data demo $(DEMO_DIR)

# pytest exits 5 when it collected no test: that is a failure for us, never a silent pass.
test: $(VENV)/.installed-test
	$(PY) -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: $(VENV)/.installed-test
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m ruff format --check src tests benchmarks scripts

bench: $(VENV)/.installed-test
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) $(DEMO_DIR) build dist .pytest_cache
