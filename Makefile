# Everything installs itself into .venv on first use; nothing is needed beforehand but
# cargo, a C compiler and python3 (3.10 to 3.14: the pinned tools need 3.10, cfn-lint < 3.15).
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
# Two stamps in one venv: the local run installs only what it needs (requirements-run.txt);
# `make venv` installs the whole development set (requirements-dev.txt, which includes it).
RUN_STAMP := $(VENV)/.installed-run
STAMP  := $(VENV)/.installed
SAM    := $(VENV)/bin/sam
# The template checks need no AWS account, credentials or network: pin a region and dummy
# credentials (and ignore any profile) so nothing on the machine changes their outcome.
OFFLINE_AWS := env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE AWS_ACCESS_KEY_ID=offline \
	AWS_SECRET_ACCESS_KEY=offline AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0
REPLAY := cargo build --release --features replay --bin im-exception-replay

.PHONY: venv test check-template lint check run serve sign smoke build replay lambda bench clean

venv: $(STAMP)

$(PYTHON):
	@python3 -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 14))' || \
		{ echo "python3 is $$(python3 --version 2>&1); the pinned tools need 3.10 to 3.14"; exit 1; }
	@echo "== creating $(VENV)"
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip

# pip without --quiet: it names each package as it goes, instead of a minute of silence.
$(RUN_STAMP): requirements-run.txt | $(PYTHON)
	@echo "== installing moto and cargo-lambda into $(VENV) (requirements-run.txt, about a minute)"
	$(PYTHON) -m pip install -r requirements-run.txt
	touch $@

$(STAMP): requirements-dev.txt requirements-run.txt | $(PYTHON)
	@echo "== installing the development tools into $(VENV) (requirements-dev.txt: moto,"
	@echo "   cargo-lambda, cfn-lint, SAM CLI, pytest, the AWS CLI; a few minutes)"
	$(PYTHON) -m pip install -r requirements-dev.txt
	touch $@ $(RUN_STAMP)

# The template checks, then unit tests and integration tests against a moto server they start
# themselves.
test: venv check-template
	MOTO_SERVER="$(abspath $(VENV))/bin/moto_server" cargo test --all-targets --all-features

# template.yaml: cfn-lint, SAM's own validation (with its linter), and tests/*.py, which check
# the template against docs/configuration.md (variables, defaults) and the crate's binaries, and
# evaluate it in each configuration (endpoints, topics, alarms, publish rights, redrive,
# dashboard); tests/test_tools.py checks the Python tools of scripts/. pytest exits 5 when it
# collects no test: that fails the target, as it should.
check-template: venv
	$(OFFLINE_AWS) $(VENV)/bin/cfn-lint template.yaml
	$(OFFLINE_AWS) $(SAM) validate --lint --region us-east-1 --template-file template.yaml
	$(OFFLINE_AWS) $(PYTHON) -m pytest -q -p no:cacheprovider tests

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --all-features -- -D warnings

check: lint test

# The local run: moto as SNS and SQS, a queue on each topic, a retry queue, the local upstream
# (the app's existing callback backend), the function under `cargo lambda watch` in the
# configurations events/README.md names, every callback in events/ POSTed the way Chat does,
# and a table checked against events/README.md (details in .local-run/run-details.txt).
run: $(RUN_STAMP)
	$(PYTHON) scripts/local.py run

# The same pieces, kept up until Ctrl-C: prints the URL and a signed curl; every message
# published is written to .local-run/published/. `make sign` prints a fresh curl (a Sign is
# good for 60 s).
serve: $(RUN_STAMP)
	$(PYTHON) scripts/local.py serve

sign:
	@$(PYTHON) scripts/local.py sign

# One signed callback to a deployed stack, its GroupId a marker (im-exception-smoke-<time>),
# with the credentials of this shell; the token from the stack's secret or IM_CALLBACK_TOKEN.
smoke: $(RUN_STAMP)
	@test -n "$(STACK)" || { echo "usage: make smoke STACK=<stack name>"; exit 2; }
	$(PYTHON) scripts/smoke.py "$(STACK)"

# The Lambda artefacts, arm64 `bootstrap`s (cargo lambda cross-compiles with zig; no Docker).
# `make build`: `sam build`, through cargo lambda, of both functions of template.yaml, one after
# the other (samconfig.toml), into .aws-sam/build/WebhookFunction/ and RedriveFunction/, ready
# for `sam deploy`; then the operator's replay tool, so that it exists before any incident
# needs it (a release build takes minutes). Nothing should prompt: zig is the venv's (ziglang,
# through the venv's python first on PATH) and telemetry is off; stdin is /dev/null, so
# anything that would still ask fails at once instead of waiting for an answer that never comes.
# `make lambda`: cargo lambda alone, into target/lambda/im-exception-webhook/bootstrap (zip it
# with `cargo lambda build --output-format zip`).
build: venv
	@echo "== sam build: the webhook, then the redrive function, each an arm64 release build"
	@echo "   through cargo lambda (several minutes each the first time, with little output)"
	PATH="$(abspath $(VENV))/bin:$$PATH" SAM_CLI_TELEMETRY=0 $(SAM) build < /dev/null
	@echo "== the operator tool im-exception-replay (release, for this machine) into target/release/"
	$(REPLAY)

# The last resort's tool alone: target/release/im-exception-replay.
replay:
	@echo "== the operator tool im-exception-replay (release, for this machine) into target/release/"
	$(REPLAY)

lambda: venv
	@echo "== the webhook, arm64 release build through cargo lambda"
	PATH="$(abspath $(VENV))/bin:$$PATH" cargo lambda build --release --arm64 --bin im-exception-webhook

# Performance: the cold-start and warm benchmark under a local Lambda Runtime API (release
# binaries, SNS on moto over HTTP and HTTPS, the token from the environment and from Secrets
# Manager), then the in-process criterion benchmark.
bench: $(RUN_STAMP)
	@echo "== release builds of the webhook, the redrive function and the bench-hello baseline"
	cargo build --release --bin im-exception-webhook --bin im-exception-redrive --example bench-hello
	$(PYTHON) bench/cold_start.py
	cargo bench --bench in_process

clean:
	rm -rf $(VENV) target .aws-sam .local-run
