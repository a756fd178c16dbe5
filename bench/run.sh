#!/usr/bin/env bash
# The benchmark harness, from a clean clone: installs nats-server and PostgreSQL if absent,
# builds release binaries, and runs hookline-bench (crates/bench), which prints the table and
# writes bench/results/<date>.json and bench/results/latest.json.
#   bench/run.sh                       # full run, ~5 minutes on 2 cores
#   bench/run.sh --smoke               # seconds: checks every part works (CI runs this)
#   bench/run.sh --duration-secs 15 --worker-events 200000
#   HOOKLINE_BENCH_PROVIDER=telnyx bench/run.sh   # another provider's webhooks (default: resend)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
ensure_nats_server; ensure_postgres
export HOOKLINE_NATS_SERVER="${HOOKLINE_NATS_SERVER:-$VENV/bin/nats-server}"
export HOOKLINE_BENCH_PROVIDER="${HOOKLINE_BENCH_PROVIDER:-resend}"
PROFILE=release; FLAGS=(--release)
for a in "$@"; do [ "$a" = --smoke ] && { PROFILE=debug; FLAGS=(); }; done
say "Building $PROFILE binaries"
(cd "$ROOT" && cargo build "${FLAGS[@]}" --quiet -p hookline-ingest -p hookline-worker -p hookline-bench)
cd "$ROOT" && exec "target/$PROFILE/hookline-bench" "$@"
