# One command per job. Every target builds .venv on a fresh machine first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow check bench soak clean brokers compile harnesses

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Bytecode is compiled up front: where PYTHONDONTWRITEBYTECODE is set nothing would ever be
# cached, and every CLI call and hook would pay for compiling the package again.
compile: $(STAMP)
	$(BIN)/python -m compileall -q src >/dev/null

demo: $(STAMP) compile
	$(BIN)/python example/demo.py

# Broker tests need a real Mosquitto (Debian's) and Aedes (npm, locked in tests/brokers/node);
# nats-server comes with the dev extras.
AEDES := tests/brokers/node/node_modules/.installed

brokers: $(AEDES)
	command -v tmux >/dev/null || (apt-get update && apt-get install -y tmux)
	command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
		(apt-get update && apt-get install -y mosquitto)

$(AEDES): tests/brokers/node/package-lock.json
	npm ci --prefix tests/brokers/node --no-audit --no-fund --silent
	touch $(AEDES)

# The real harness CLIs (Claude Code, Codex, Gemini CLI, OpenCode, Pi) the live-turn tests
# drive, pinned in tests/live/harnesses/package-lock.json; installed once, reused while the lock
# is unchanged. No install scripts run but Claude Code's and OpenCode's, which put their native
# binaries (optional dependencies) in place of their launchers. npm install, not npm ci: npm ci
# refuses a lock that lacks the other platforms' optional binaries.
HARNESSES := tests/live/harnesses/node_modules/.installed

harnesses: $(HARNESSES)

$(HARNESSES): tests/live/harnesses/package-lock.json
	npm install --prefix tests/live/harnesses --ignore-scripts --no-audit --no-fund --silent --loglevel=error
	cd tests/live/harnesses && node node_modules/@anthropic-ai/claude-code/install.cjs >/dev/null && \
		node node_modules/opencode-ai/postinstall.mjs >/dev/null
	touch $(HARNESSES)

test: $(STAMP) brokers harnesses compile
	$(BIN)/python -m pytest -q -m "not slow"

# The tests marked slow (real harness turns answering prompts, network namespaces, each
# pairing form through a broker): CI runs them after `make test`.
test-slow: $(STAMP) brokers harnesses compile
	$(BIN)/python -m pytest -q -m slow

check: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

# hcom, the tool the issue compares with, in a virtualenv of its own (never a dependency).
HCOM = .bench/hcom

bench: $(STAMP) brokers compile
	$(BIN)/python bench/run.py
	$(BIN)/python bench/signatures.py
	$(BIN)/python bench/brokers.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/hooks.py
	$(BIN)/python bench/tasks.py
	$(BIN)/python bench/term.py
	test -x $(HCOM)/bin/hcom || $(BIN)/python bench/cli.py --setup-hcom $(HCOM) || \
		echo 'bench: hcom could not be installed; it is not measured'
	$(BIN)/python bench/cli.py $$(test -x $(HCOM)/bin/hcom && echo --hcom $(HCOM))
	$(BIN)/python bench/files.py
	$(BIN)/python bench/soak.py --count 100 --restarts 10

# The fault soak at full counts (1,000 messages, 100 SIGKILL restarts per link; some minutes
# per link). `make bench` runs a short one. Exit 1 when a message is lost, duplicated or
# reordered, or a link never recovers.
soak: $(STAMP) brokers compile
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .bench
