# Everything installs itself into .venv on first use; nothing is needed beforehand but
# cargo and python3.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test lint check run clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Unit tests, and integration tests against a moto server they start themselves.
test: venv
	MOTO_SERVER="$(abspath $(VENV))/bin/moto_server" cargo test --all-targets

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

check: lint test

# The local run: moto as the local SNS, an SQS queue on each topic, the function under
# `cargo lambda watch`, every callback in events/ POSTed the way Chat does, and a table.
run: venv
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTHON) scripts/local_run.py

clean:
	rm -rf $(VENV) target
