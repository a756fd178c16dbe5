#!/usr/bin/env bash
# Runs hookline's whole test suite: formatting, lints, unit and integration tests against a real
# nats-server, real PostgreSQL and real Prometheus (installed if missing), then a smoke run of
# scripts/up.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_nats_server
ensure_postgres
ensure_prometheus
ensure_deploy_validators
ensure_python_clients
export HOOKLINE_NATS_SERVER="$VENV/bin/nats-server"
HOOKLINE_PG_BIN="$(pg_bin_dir)"
export HOOKLINE_PG_BIN

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

say "Tests (real nats-server: $HOOKLINE_NATS_SERVER, real PostgreSQL: $HOOKLINE_PG_BIN)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi

say "Smoke run of the one-command local system (scripts/up.sh --smoke)"
HOOKLINE_STATE_DIR="$(mktemp -d)" HOOKLINE_K6_SMOKE=1 bash scripts/up.sh --smoke

say "Smoke run of the benchmark harness (bench/run.sh --smoke: every part, tiny counts)"
bash bench/run.sh --smoke --out-dir "$(mktemp -d)"
