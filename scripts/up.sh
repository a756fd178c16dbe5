#!/usr/bin/env bash
# Runs the whole of hookline locally, no Docker: installs nats-server and PostgreSQL if missing,
# starts nats-server (JetStream) and a throwaway PostgreSQL under .hookline/, applies migrations,
# creates the streams, starts ingest and two workers, sends signed sample webhooks for Telnyx and
# Resend, and prints the resulting rows. Then it keeps running until Ctrl-C, which stops
# everything it started.
#
#   scripts/up.sh            run, demo, keep running (debug build: quick to build)
#   scripts/up.sh --release  the same with release binaries: use it for load tests (k6/run.sh)
#   scripts/up.sh --smoke    run, demo, stop (what the test suite checks)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MODE=run
PROFILE=debug
case "${1:-}" in
    "") ;;
    --smoke) MODE=smoke ;;
    --release) PROFILE=release ;;
    *) die "usage: scripts/up.sh [--release | --smoke]" ;;
esac

STATE="${HOOKLINE_STATE_DIR:-$ROOT/.hookline}"
RUN="$STATE/run"
LOGS="$RUN/logs"
PIDS=()

cleanup() {
    trap - EXIT INT TERM
    say "Stopping"
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_nats_server
ensure_postgres
ensure_pg_user
PGBIN="$(pg_bin_dir)"

say "Building hookline ($PROFILE)"
FLAGS=(); [ "$PROFILE" = release ] && FLAGS=(--release)
(cd "$ROOT" && cargo build --quiet "${FLAGS[@]}" -p hookline-ingest -p hookline-worker -p hookline-cli)
BIN="$ROOT/target/$PROFILE"

mkdir -p "$STATE"
if [ ! -f "$STATE/dev.env" ]; then
    "$BIN/hookline" keygen > "$STATE/dev.env"
fi
set -a; source "$STATE/dev.env"; set +a

rm -rf "$RUN"; mkdir -p "$LOGS" "$RUN/pg"
chmod 755 "$STATE" "$RUN"
NATS_PORT="$(free_port "${HOOKLINE_NATS_PORT:-4222}")"
PG_PORT="$(free_port "${HOOKLINE_PG_PORT:-5432}")"
HTTP_PORT="$(free_port "${HOOKLINE_HTTP_PORT:-8080}")"

say "Starting nats-server with JetStream on 127.0.0.1:$NATS_PORT"
# A config file rather than flags: nats-server has no flag for sync_interval. Without `always` a
# PubAck (so ingest's 2xx) is not an fsync: the event is only in the page cache until the next
# sync, by default within 2 minutes, and a power cut or kernel crash loses it. `always` fsyncs
# before every PubAck, as docker-compose.yml and deploy/kubernetes/nats.yaml do too (docs/failure-model.md,
# "Dead letters", with the measured cost).
cat > "$RUN/nats.conf" <<CONF
host: 127.0.0.1
port: $NATS_PORT
jetstream {
  store_dir: "$RUN/nats"
  sync_interval: always
}
CONF
"$VENV/bin/nats-server" -c "$RUN/nats.conf" > "$LOGS/nats.log" 2>&1 &
PIDS+=($!)

say "Starting PostgreSQL ($PGBIN) on 127.0.0.1:$PG_PORT"
[ "$(id -u)" = 0 ] && chown "$PG_USER" "$RUN/pg"
chmod 700 "$RUN/pg"
"${AS_PG[@]}" "$PGBIN/initdb" -D "$RUN/pg" -U postgres --auth=trust -E UTF8 --locale=C --no-sync --no-instructions > "$LOGS/initdb.log" 2>&1 \
    || { cat "$LOGS/initdb.log"; die "initdb failed"; }
"${AS_PG[@]}" "$PGBIN/postgres" -D "$RUN/pg" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$RUN/pg" > "$LOGS/postgres.log" 2>&1 &
PIDS+=($!)
wait_for "PostgreSQL" 30 "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
"$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres hookline

export NATS_URL="nats://127.0.0.1:$NATS_PORT"
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/hookline"
export HOOKLINE_INGEST_URL="http://127.0.0.1:$HTTP_PORT"
export HOOKLINE_LOG_FORMAT=text

say "Applying migrations and creating streams"
"$BIN/hookline" migrate
"$BIN/hookline" streams

say "Starting ingest on $HOOKLINE_INGEST_URL and two workers"
HOOKLINE_LISTEN="127.0.0.1:$HTTP_PORT" "$BIN/hookline-ingest" > "$LOGS/ingest.log" 2>&1 &
PIDS+=($!)
WORKER_PORTS=()
for n in 1 2; do
    WORKER_PORTS+=("$(free_port $((9100 + n)))")
    HOOKLINE_WORKER_LISTEN="127.0.0.1:${WORKER_PORTS[-1]}" WEBHOOK_FLUSH_INTERVAL=200 \
        "$BIN/hookline-worker" > "$LOGS/worker-$n.log" 2>&1 &
    PIDS+=($!)
done
wait_for "ingest /readyz" 30 curl -sf "$HOOKLINE_INGEST_URL/readyz"
# For k6/run.sh: where ingest is, and which build the fixtures signer comes from.
printf 'HOOKLINE_INGEST_URL=%s\nHOOKLINE_PROFILE=%s\n' "$HOOKLINE_INGEST_URL" "$PROFILE" > "$RUN/endpoints.env"

say "Sending signed sample webhooks"
"$BIN/hookline" demo

if [ "$MODE" = smoke ]; then
    if [ "${HOOKLINE_K6_SMOKE:-0}" = 1 ]; then
        say "k6 smoke: k6/constant.js for 3 s at 20 req/s per provider"
        bash "$ROOT/k6/run.sh" constant -e DURATION=3s -e RATE=20 -e P99_MS=2000 --quiet
        FIXTURES_COUNT=50 bash "$ROOT/k6/run.sh" duplicate-storm -e DURATION=2s -e RATE=20 -e EVENTS=5 -e P99_MS=2000 --quiet
    fi
    "$BIN/hookline" check
    exit 0
fi

cat <<INFO

hookline is running. Ctrl-C stops everything.
  ingest     $HOOKLINE_INGEST_URL/webhooks/{telnyx,resend}   (/healthz, /readyz, /metrics)
  workers    http://127.0.0.1:${WORKER_PORTS[0]}/readyz  http://127.0.0.1:${WORKER_PORTS[1]}/readyz   (/metrics)
  NATS       $NATS_URL      PostgreSQL  $DATABASE_URL
  logs       $LOGS/
  keys       $STATE/dev.env (test keys; ingest trusts them)
Try, in another shell:
  set -a; source $STATE/dev.env; set +a
  echo '{"type":"email.delivered","created_at":"2026-11-23T10:00:00Z","data":{"email_id":"my-email"}}' \\
    | $BIN/hookline send resend --url $HOOKLINE_INGEST_URL
  psql $DATABASE_URL -c 'select provider, event_type, status from delivery_events'
  prometheus --config.file=deploy/prometheus/prometheus.yml   # scrapes the default ports
INFO
wait -n "${PIDS[@]}" || true
die "a hookline process exited; see $LOGS/"
