# Everything installs itself into .venv on first use; nothing is needed beforehand but
# cargo and python3.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SAM    := $(VENV)/bin/sam
# The template checks need no AWS account, credentials or network: pin a region and dummy
# credentials (and ignore any profile) so nothing on the machine changes their outcome.
OFFLINE_AWS := env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE AWS_ACCESS_KEY_ID=offline \
	AWS_SECRET_ACCESS_KEY=offline AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0

.PHONY: venv test check-template lint check run build lambda bench clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The template checks, then unit tests and integration tests against a moto server they start
# themselves.
test: venv check-template
	MOTO_SERVER="$(abspath $(VENV))/bin/moto_server" cargo test --all-targets --all-features

# template.yaml: cfn-lint, SAM's own validation (with its linter), and tests/*.py, which check
# the template against docs/configuration.md (variables, defaults) and the crate's binaries, and
# evaluate it in each configuration (endpoints, topics, alarms, publish rights, redrive,
# dashboard). pytest exits 5 when it collects no test: that fails the target, as it should.
check-template: venv
	$(OFFLINE_AWS) $(VENV)/bin/cfn-lint template.yaml
	$(OFFLINE_AWS) $(SAM) validate --lint --region us-east-1 --template-file template.yaml
	$(OFFLINE_AWS) $(PYTHON) -m pytest -q -p no:cacheprovider tests

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --all-features -- -D warnings

check: lint test

# The local run: moto as the local SNS, an SQS queue on each topic, a local upstream (the app's
# existing callback backend, Python's http.server), the function under `cargo lambda watch` in
# the configurations events/README.md names, every callback in events/ POSTed the way Chat
# does, and a table checked against events/README.md.
run: venv
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTHON) scripts/local_run.py

# The Lambda artefacts, arm64 `bootstrap`s (cargo lambda cross-compiles with zig; no Docker).
# `make build`: `sam build`, through cargo lambda, of both functions of template.yaml, one after
# the other (samconfig.toml), into .aws-sam/build/WebhookFunction/ and RedriveFunction/, ready
# for `sam deploy`. Nothing should prompt: zig is the venv's (ziglang, through the venv's python
# first on PATH) and telemetry is off; stdin is /dev/null, so anything that would still ask
# fails at once instead of waiting for an answer that never comes.
# `make lambda`: cargo lambda alone, into target/lambda/im-exception-webhook/bootstrap (zip it
# with `cargo lambda build --output-format zip`).
build: venv
	PATH="$(abspath $(VENV))/bin:$$PATH" SAM_CLI_TELEMETRY=0 $(SAM) build < /dev/null

lambda: venv
	PATH="$(abspath $(VENV))/bin:$$PATH" cargo lambda build --release --arm64 --bin im-exception-webhook

# Performance: the cold-start and warm benchmark under a local Lambda Runtime API (release
# binaries, SNS on moto over HTTP and HTTPS), then the in-process criterion benchmark.
bench: venv
	cargo build --release --bin im-exception-webhook --bin im-exception-redrive --example bench-hello
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTHON) bench/cold_start.py
	cargo bench --bench in_process

clean:
	rm -rf $(VENV) target .aws-sam
