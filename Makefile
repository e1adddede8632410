# Set-up and everyday commands. `make demo` and `make test` each create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.candletok-installed

.PHONY: demo test lint bench bench-quick clean

$(STAMP): pyproject.toml scripts/setup_env.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup_env.sh
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/candletok demo
	@echo ""
	@echo "Run candletok yourself: source $(VENV)/bin/activate, then candletok --help"
	@echo "(or call $(VENV)/bin/candletok directly)."

# pyproject's addopts already passes -q once: one -q keeps pytest's closing "N passed" line.
test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check candletok tests benchmarks

bench: $(STAMP)
	$(PY) -m benchmarks.run --full

bench-quick: $(STAMP)
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
