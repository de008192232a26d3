# The commands the README names. `make demo` and `make test` work on a fresh machine: they install
# what they need first, and skip that step quickly when it is already there.

SHELL := /bin/bash
CARGO ?= cargo
NIGHTLY ?= +nightly
# `make fuzz-smoke` (part of `make test`) runs each target for a fixed number of inputs from a
# fixed seed, so that the same code gives the same result every time (capped in seconds on a slow
# machine); `make fuzz` explores for FUZZ_SECONDS per target.
FUZZ_SMOKE_RUNS ?= 20000
FUZZ_SMOKE_SECONDS ?= 30
FUZZ_SECONDS ?= 600
NO_STD_TARGETS := wasm32-unknown-unknown thumbv7em-none-eabihf
# The Go toolchain for the interop peer (tests/interop/go): the one on PATH, else Go's default place.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GO_PEER := target/drpc-go-peer
# Go DRPC's side of the benchmarks that put Go beside weir (bench-mux, bench-codec).
GO_BENCH := target/drpc-go-bench
# The Python package (bindings/python): a venv with pinned tools, and the wheel built into it.
PYTHON ?= python3
PY_VENV := target/python-venv
PY_TOOLS := maturin==1.16.0 pytest==9.2.0 pytest-asyncio==1.5.0 hypothesis==6.170.27 mypy==2.4.1 \
	psycopg==3.3.9 psycopg-binary==3.3.9
# The npm package (bindings/node): its pinned tools come from package-lock.json.
NODE_DIR := bindings/node
# The weir crate's shipped feature combinations: `make test` tests, lints and documents each one.
# `default` is the whole workspace with default features, where cargo unifies in what the other
# members turn on (the Python binding turns on serde); `weir` is the weir crate alone with its
# default features (std without serde); every other word is the weir crate alone with those cargo
# flags: `--` goes in front and `+` stands for a space, so `no-default-features+features=serde` is
# `--no-default-features --features=serde` (serde on no_std). Override for a quicker run, e.g.
# `make unit WEIR_FEATURE_SETS=all-features`.
WEIR_FEATURE_SETS ?= default weir no-default-features no-default-features+features=serde all-features
# Test binaries that legitimately hold no tests, as the test summary names them
# (`unittests:<binary>`, `tests:<binary>`, `doctests:<crate>`). Any other binary that reports
# `running 0 tests` fails `make test`, and so does an entry here whose binary now runs tests.
WEIR_NO_TESTS ?= unittests:demo unittests:flow_sim unittests:hostile unittests:hostile_server \
	unittests:proxy unittests:tokio_client unittests:weir_tests

.PHONY: all demo test test-summary tools vectors fmt-check clippy unit doc no-std fuzz-build \
	fuzz-smoke fuzz go-peer go-bench interop hostile python node node-build bench-node \
	bench bench-codec bench-flow bench-mux bench-mux-core bench-transfer-core bench-frontier \
	bench-proxy

all: test

## Tools ------------------------------------------------------------------------------------------

tools:
	@installed="$$(rustup target list --installed)"; \
	for t in $(NO_STD_TARGETS); do \
		grep -qx "$$t" <<<"$$installed" || rustup target add "$$t"; \
	done
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
# PostgreSQL for weir-tests' throwaway clusters (tests/src/postgres.rs); a cluster the package may
# create and start is not used.
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)

## The tour ---------------------------------------------------------------------------------------

demo: go-peer
	WEIR_GO_PEER=$(CURDIR)/$(GO_PEER) $(CARGO) run --quiet --release -p weir-examples --bin demo

## Tests ------------------------------------------------------------------------------------------

# Ends with one line that totals every cargo test summary of the run (test-summary).
test: tools vectors fmt-check clippy unit interop hostile python node doc no-std fuzz-smoke
	@$(MAKE) --no-print-directory test-summary

# The start of a loop over WEIR_FEATURE_SETS that sets $$args to the set's cargo arguments; the
# command after it runs once per set and must end the loop with `|| exit 1; done`.
for_each_feature_set = for set in $(WEIR_FEATURE_SETS); do \
	case "$$set" in default) args=--workspace;; weir) args="-p weir";; \
		*) args="-p weir --$${set//+/ --}";; esac; \
	echo "== $@ ($$set): $$args";

# The Go-recorded vectors must stay exactly as they were copied.
vectors:
	cd tests/vectors/drpc && sha256sum --check --quiet SHA256SUMS

fmt-check:
	$(CARGO) fmt --all --check
	cd fuzz && $(CARGO) fmt --all --check
	cd bench && $(CARGO) fmt --all --check

clippy:
	@$(for_each_feature_set) $(CARGO) clippy $$args --all-targets -- -D warnings || exit 1; done

# Every feature set's output goes to one file, which test-summary checks and totals. weir-tests'
# go_interop runs against the stock Go DRPC peer, found through WEIR_GO_PEER.
unit: go-peer
	@mkdir -p target && rm -f target/test-output.txt
	@set -o pipefail; $(for_each_feature_set) WEIR_GO_PEER=$(CURDIR)/$(GO_PEER) \
		$(CARGO) test $$args 2>&1 | tee -a target/test-output.txt || exit 1; done

# Every interop case against the stock Go DRPC peer, both ways, one PASS or FAIL line each (probes
# that only report are left out), then the totals; fails on any failure or on no case at all.
interop: go-peer
	@set -o pipefail; WEIR_GO_PEER=$(CURDIR)/$(GO_PEER) $(CARGO) test -p weir-tests --test go_interop \
		2>&1 | awk '/^test .* \.\.\. (ok|FAILED)$$/ { \
			if ($$NF == "ok") { print "PASS " $$2; pass++ } else { print "FAIL " $$2; fail++ } } \
		END { printf "interop_passed=%d\ninterop_failed=%d\n", pass, fail; exit (fail > 0 || pass == 0) }'

# The Go DRPC peer for the interop tests, with the versions go.mod and go.sum pin (no edits to
# them: -mod=readonly). Rebuilt only when its sources change; Go's build cache keeps that quick.
go-peer: $(GO_PEER)

$(GO_PEER): tests/interop/go/go.mod tests/interop/go/go.sum $(wildcard tests/interop/go/peer/*.go)
	@mkdir -p target
	cd tests/interop/go && GOFLAGS="-mod=readonly -buildvcs=false" $(GO) build -o $(CURDIR)/$@ ./peer

# The same module's benchmark program (tests/interop/go/bench), built the same way.
go-bench: $(GO_BENCH)

$(GO_BENCH): tests/interop/go/go.mod tests/interop/go/go.sum $(wildcard tests/interop/go/bench/*.go)
	@mkdir -p target
	cd tests/interop/go && GOFLAGS="-mod=readonly -buildvcs=false" $(GO) build -o $(CURDIR)/$@ ./bench

# The Python package as a user gets it: the wheel, built once, installed into the venv (made and
# given the pinned tools on first use), then pytest and mypy from inside the venv's folder, where
# the source tree's python/ is not importable: what is tested is the installed wheel.
python:
	@test -x $(PY_VENV)/bin/python || $(PYTHON) -m venv $(PY_VENV)
	@test "$$(cat $(PY_VENV)/tools 2>/dev/null)" = "$(PY_TOOLS)" || \
		{ $(PY_VENV)/bin/pip install --quiet $(PY_TOOLS) && echo "$(PY_TOOLS)" > $(PY_VENV)/tools; }
	@rm -f target/wheels/weir-*.whl
	$(PY_VENV)/bin/maturin build --quiet --release -o target/wheels -m bindings/python/Cargo.toml
	$(PY_VENV)/bin/pip install --quiet --force-reinstall --no-deps target/wheels/weir-*.whl
	cd $(PY_VENV) && bin/python -m pytest -q -p no:cacheprovider $(CURDIR)/bindings/python/tests
	cd $(PY_VENV) && bin/python -m mypy --strict --cache-dir mypy-cache $(CURDIR)/bindings/python/tests
	cd $(PY_VENV) && bin/python -m mypy.stubtest --mypy-config-file $(CURDIR)/bindings/python/pyproject.toml weir

# The npm package as a user gets it: `npm ci` of the pinned tools only when node_modules is
# missing or older than the lockfile, one release build of the native module (which regenerates
# index.d.ts), then node --test (the vectors, the machines, weir/net against itself, against the
# Go peer and against weir-tokio both ways, the packed tarball installed into a fresh folder) and
# tsc --strict over a TypeScript user.
node: go-peer node-build
	$(CARGO) build --quiet --release -p weir-examples --bin hostile_server --bin tokio_client
	cd $(NODE_DIR) && WEIR_GO_PEER=$(CURDIR)/$(GO_PEER) \
		WEIR_TOKIO_SERVER=$(CURDIR)/target/release/hostile_server \
		WEIR_TOKIO_CLIENT=$(CURDIR)/target/release/tokio_client node --test __test__/
	cd $(NODE_DIR) && npx tsc --noEmit --strict -p __test__/tsconfig.json

node-build:
	@test $(NODE_DIR)/node_modules/.package-lock.json -nt $(NODE_DIR)/package-lock.json || \
		(cd $(NODE_DIR) && npm ci --no-audit --no-fund)
	cd $(NODE_DIR) && npx napi build --platform --release --no-js

doc:
	@$(for_each_feature_set) RUSTDOCFLAGS="-D warnings" $(CARGO) doc $$args --no-deps || exit 1; done

# Totals target/test-output.txt, and fails unless it is whole: every test binary that started
# reported `running N tests` and a result, none failed, cargo reported no error, and no binary
# outside WEIR_NO_TESTS ran zero tests.
test-summary:
	@test -s target/test-output.txt || { echo "weir: no test output in target/test-output.txt"; exit 1; }
	@awk -v allow="$(WEIR_NO_TESTS)" "$$WEIR_SUMMARY_AWK" target/test-output.txt

# Hostile peers, each against a fresh server process: the DRPC echo server (hostile_server) in
# mux and compat mode, and the proxy in front of a throwaway PostgreSQL cluster. One name=value
# line per figure, the server's peak RSS among them; a case fails when the peak passes its bound
# (examples/src/bin/hostile.rs) or a well-behaved client goes unanswered. About half a minute.
# Release builds, as a server ships: a debug build's larger futures and slower handlers make the
# peak swing by several MiB from run to run and measure nothing a deployment would see.
hostile:
	$(CARGO) build --quiet --release -p weir-examples --bin hostile_server --bin proxy
	$(CARGO) run --quiet --release -p weir-examples --bin hostile

no-std:
	for t in $(NO_STD_TARGETS); do \
		$(CARGO) build -p weir --no-default-features --target "$$t" || exit 1; \
	done

## Fuzzing: every target under fuzz/fuzz_targets, seeded from fuzz/seeds/<target> ------------------

fuzz-build:
	cd fuzz && $(CARGO) $(NIGHTLY) fuzz build -O

# Any crash fails the run.
fuzz-smoke: fuzz-build
	@cd fuzz && for t in $$($(CARGO) $(NIGHTLY) fuzz list); do \
		echo "fuzz-smoke: $$t ($(FUZZ_SMOKE_RUNS) inputs)"; \
		scratch=$$(mktemp -d); mkdir -p seeds/$$t; \
		$(CARGO) $(NIGHTLY) fuzz run -O $$t $$scratch seeds/$$t -- -seed=1 -runs=$(FUZZ_SMOKE_RUNS) \
			-max_total_time=$(FUZZ_SMOKE_SECONDS) -print_final_stats=1 2>&1 \
			| grep -E '^(stat::number_of_executed_units|==|SUMMARY|Running|thread)' ; \
		status=$${PIPESTATUS[0]}; rm -rf $$scratch; test "$$status" -eq 0 || exit 1; \
	done

# The long run: each target for FUZZ_SECONDS (override: make fuzz FUZZ_SECONDS=60 TARGETS="a b").
fuzz: fuzz-build
	@cd fuzz && for t in $${TARGETS:-$$($(CARGO) $(NIGHTLY) fuzz list)}; do \
		mkdir -p corpus/$$t seeds/$$t; \
		$(CARGO) $(NIGHTLY) fuzz run -O $$t corpus/$$t seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

## Benchmarks (quick mode: each under a minute, ending in name=value lines) ------------------------

bench: bench-codec bench-mux-core bench-mux bench-flow bench-transfer-core bench-frontier bench-proxy \
	bench-node

# Go's drpcwire reader runs beside weir's packet assembly in the same run (WEIR_GO_BENCH).
bench-codec: go-bench
	WEIR_BENCH_QUICK=1 WEIR_GO_BENCH=$(CURDIR)/$(GO_BENCH) $(CARGO) bench -p weir --bench codec

# weir/net against @grpc/grpc-js on one loopback connection (unary calls/s with 1 and 64 callers),
# then frames decoded/s through the binding (bindings/node/bench/unary.js).
bench-node: node-build
	cd $(NODE_DIR) && WEIR_BENCH_QUICK=1 node bench/unary.js

bench-mux-core:
	WEIR_BENCH_QUICK=1 $(CARGO) bench -p weir --bench mux_session

# weir-tokio over loopback TCP beside its baselines (bench/ is its own workspace, out of `make test`),
# Go DRPC's client and server among them (WEIR_GO_BENCH).
bench-mux: go-bench
	cd bench && WEIR_BENCH_QUICK=1 WEIR_GO_BENCH=$(CURDIR)/$(GO_BENCH) $(CARGO) run --quiet --release --bin mux

# pgbench through weir's PostgreSQL proxy, straight and through PgBouncer, on two throwaway
# clusters (bench/src/proxy); installs postgresql and pgbouncer when they are missing.
bench-proxy:
	@ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)
	@command -v pgbouncer >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer)
	cd bench && WEIR_BENCH_QUICK=1 $(CARGO) run --quiet --release --bin proxy

# The criterion cycle benchmark, then the simulator for the scenario figures; all four last.
bench-flow:
	@mkdir -p target
	set -o pipefail; WEIR_BENCH_QUICK=1 $(CARGO) bench -p weir --bench flow | tee target/bench-flow.txt
	set -o pipefail; $(CARGO) run --quiet --release -p weir-examples --bin flow_sim -- --out target/flow-sim \
		| tee -a target/bench-flow.txt
	@grep -E '^(admit_cycle_ns|over_admission_bytes|slow_stream_regular_rate_ratio|heartbeats_queued)=' \
		target/bench-flow.txt

bench-transfer-core:
	WEIR_BENCH_QUICK=1 $(CARGO) bench -p weir --bench transfer

bench-frontier:
	WEIR_BENCH_QUICK=1 $(CARGO) bench -p weir --bench frontier

## The test summary (test-summary) -----------------------------------------------------------------

# Binaries are named from cargo's `Running` and `Doc-tests` lines: `unittests:<binary>` for a
# crate's lib or bin, `tests:<binary>` for an integration test, `doctests:<crate>`.
define WEIR_SUMMARY_AWK
function problem(message) { printf "weir: FAIL: %s\n", message; bad = 1 }
function start(name) {
	if (current != "") problem(current " reported no result");
	binaries++; current = name; counted = 0
}
BEGIN { n = split(allow, list, " "); for (i = 1; i <= n; i++) allowed[list[i]] = 1 }
/^ +Running / {
	bin = $$NF; sub(/\)$$/, "", bin); sub(/.*\//, "", bin); sub(/-[0-9a-f]+$$/, "", bin);
	start(($$2 == "unittests" ? "unittests:" : "tests:") bin); next
}
/^ +Doc-tests / { start("doctests:" $$2); next }
/^running [0-9]+ tests?$$/ {
	if (current == "" || counted) { problem("`" $$0 "` outside a test binary"); next }
	counted = 1; runs++;
	if ($$2 == 0) {
		empty[current] = 1;
		if (!(current in allowed))
			problem(current " ran no tests (add it to WEIR_NO_TESTS only if it is meant to hold none)")
	} else {
		ran[current] = 1
	}
	next
}
/^test result: / {
	results++; passed += $$4; failed += $$6;
	if ($$3 != "ok.") problem(current " failed");
	current = ""; next
}
/^error(\[E[0-9]+\])?: / { problem("cargo: " $$0) }
END {
	if (current != "") problem(current " reported no result");
	for (name in allowed)
		if ((name in ran) && !(name in empty))
			problem(name " is in WEIR_NO_TESTS but runs tests: take it out");
	if (binaries == 0) problem("no test binary ran");
	if (runs != binaries || results != binaries)
		problem(sprintf("%d test binaries started, %d reported running, %d reported a result",
			binaries, runs, results));
	printf "weir: %d passed, %d failed (%d test binaries)\n", passed, failed, binaries;
	exit (bad || failed > 0) ? 1 : 0
}
endef
export WEIR_SUMMARY_AWK
