#!/usr/bin/env bash
# A quick measurement of the release build on this machine (the figures behind README "Sizing"):
#   1. ingest: wrk replays pre-signed Resend webhooks for DURATION at 64 connections;
#   2. worker: one worker drains what ingest stored into PostgreSQL, recipients registered.
# Everything on loopback, throwaway servers in a temp dir. Not a test: numbers vary with the box.
#   bench/quick.sh            (DURATION=10s EVENTS=200000 by default)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
DURATION="${DURATION:-10s}"
EVENTS="${EVENTS:-200000}"
SECRET="whsec_aG9va2xpbmUtcmVzZW5kLWN1cnJlbnQtc2VjcmV0ISE="

ensure_nats_server; ensure_postgres; ensure_pg_user
command -v wrk >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
say "Building release binaries"
(cd "$ROOT" && cargo build --release --quiet -p hookline-ingest -p hookline-worker -p hookline-cli)
BIN="$ROOT/target/release"
PGBIN="$(pg_bin_dir)"
DIR="$(mktemp -d)"; chmod 755 "$DIR"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

NATS_PORT=$(free_port 0); PG_PORT=$(free_port 0); HTTP_PORT=$(free_port 0); W_PORT=$(free_port 0)
"$VENV/bin/nats-server" -js -sd "$DIR/nats" -a 127.0.0.1 -p "$NATS_PORT" > "$DIR/nats.log" 2>&1 & PIDS+=($!)
mkdir "$DIR/pg"; [ "$(id -u)" = 0 ] && chown "$PG_USER" "$DIR/pg"; chmod 700 "$DIR/pg"
"${AS_PG[@]}" "$PGBIN/initdb" -D "$DIR/pg" -U postgres --auth=trust --no-sync --no-instructions > /dev/null
"${AS_PG[@]}" "$PGBIN/postgres" -D "$DIR/pg" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$DIR/pg" > "$DIR/pg.log" 2>&1 & PIDS+=($!)
wait_for PostgreSQL 30 "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
"$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres hookline
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/hookline" NATS_URL="nats://127.0.0.1:$NATS_PORT"
"$BIN/hookline" migrate > /dev/null
"$PGBIN/psql" -q "$DATABASE_URL" -c "INSERT INTO batches (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'bench');
  INSERT INTO recipients (batch_id, provider, provider_message_id)
  SELECT '00000000-0000-0000-0000-000000000001', 'resend', 'bench-' || i FROM generate_series(0, $EVENTS - 1) i;"

python3 "$ROOT/bench/presign.py" "$SECRET" "$EVENTS" "$DIR/requests.txt"
HOOKLINE_LISTEN="127.0.0.1:$HTTP_PORT" RESEND_WEBHOOK_SECRET="$SECRET" RUST_LOG=warn \
    HOOKLINE_STREAM_MAX_BYTES=4294967296 "$BIN/hookline-ingest" > "$DIR/ingest.log" 2>&1 & PIDS+=($!)
INGEST_PID=$!
wait_for ingest 30 curl -sf "127.0.0.1:$HTTP_PORT/readyz"

say "1. ingest: verify + publish + PubAck, wrk -t2 -c64 -d$DURATION"
(cd "$ROOT/bench" && REQUESTS="$DIR/requests.txt" wrk -t2 -c64 -d"$DURATION" --latency -s replay.lua "http://127.0.0.1:$HTTP_PORT") \
    | grep -E "Requests/sec|Latency|50%|99%"
echo "   ingest RSS: $(ps -o rss= -p "$INGEST_PID") KiB"
STORED=$(curl -s "127.0.0.1:$HTTP_PORT/metrics" | awk '/^webhook_queued_total\{duplicate="false"/ {s+=$2} END {print s}')

say "2. worker: one worker drains $STORED stored events into PostgreSQL"
T0=$(date +%s.%N)
HOOKLINE_WORKER_LISTEN="127.0.0.1:$W_PORT" RUST_LOG=warn "$BIN/hookline-worker" > "$DIR/worker.log" 2>&1 & PIDS+=($!)
WORKER_PID=$!
until [ "$(curl -s "127.0.0.1:$W_PORT/readyz" | python3 -c 'import json,sys; d=json.load(sys.stdin); print((d["pending"] or 0) + (d["ack_pending"] or 0))' 2>/dev/null)" = 0 ]; do sleep 0.2; done
T1=$(date +%s.%N)
N=$("$PGBIN/psql" -tA "$DATABASE_URL" -c "select count(*) from delivery_events")
echo "   stored $N events in $(echo "$T1 - $T0" | bc) s: $(echo "$N / ($T1 - $T0)" | bc) events/s; worker RSS $(ps -o rss= -p "$WORKER_PID") KiB"
"$BIN/hookline" check
