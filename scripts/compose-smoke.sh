#!/usr/bin/env bash
# Brings the docker-compose stack up for real, sends signed webhooks, checks the rows in
# PostgreSQL and that Prometheus scrapes ingest and every worker, then tears it all down.
# Not in CI: it needs a running Docker engine and the images docker-compose.yml names
# (nats:2.12.15-alpine, postgres:15, prom/prometheus, and rust:1-bookworm plus
# gcr.io/distroless/cc-debian12 to build hookline's image). Where the registries are out of reach
# (this project's machines), scripts/compose-standins.sh builds local stand-ins for them.
#
#   scripts/compose-smoke.sh            # WORKERS=3 by default
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

WORKERS="${WORKERS:-3}"
PROJECT="${COMPOSE_PROJECT:-hookline-smoke}"
compose() { docker-compose -p "$PROJECT" "$@"; }

command -v docker-compose >/dev/null || die "docker-compose is required"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd)"

say "Building the host CLI (signs the test webhooks)"
cargo build --release --quiet -p hookline-cli
HOOKLINE="$ROOT/target/release/hookline"

# Fresh provider keys for this run: ingest verifies with the public halves.
eval "$("$HOOKLINE" keygen | sed 's/^/export /')"

cleanup() {
    local status=$?
    if [ "$status" != 0 ]; then
        say "Failed; the last lines of each service's log:"
        compose logs --tail 20 || true
    fi
    say "Tearing the stack down"
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    exit "$status"
}
trap cleanup EXIT

say "Starting nats, postgres, migrate, streams, ingest, $WORKERS workers and Prometheus"
compose up -d --build --scale worker="$WORKERS" \
    nats postgres migrate streams ingest worker prometheus

wait_for() { # what, seconds, command...
    local what=$1 secs=$2 start=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ $((SECONDS - start)) -lt "$secs" ] || die "timed out after ${secs}s waiting for $what"
        sleep 1
    done
}

wait_for "ingest ready" 180 curl -fsS http://127.0.0.1:8080/readyz

say "Sending signed webhooks (Telnyx and Resend, each delivered after sent)"
body_dir="$(mktemp -d)"
events=0
for i in 1 2 3 4 5; do
    for status in sent delivered; do
        now="$(date -u +%Y-%m-%dT%H:%M:%S.000+00:00)"
        cat >"$body_dir/t.json" <<EOF
{"data":{"event_type":"message.$([ $status = sent ] && echo sent || echo finalized)","id":"smoke-t-$i-$status","occurred_at":"$now","payload":{"id":"smoke-sms-$i","direction":"outbound","type":"SMS","errors":[],"to":[{"phone_number":"+1312555000$i","status":"$status"}]},"record_type":"event"}}
EOF
        "$HOOKLINE" send telnyx --body "$body_dir/t.json" >/dev/null
        cat >"$body_dir/r.json" <<EOF
{"type":"email.$status","created_at":"$now","data":{"email_id":"smoke-email-$i","created_at":"$now","to":["r$i@example.com"],"subject":"smoke"}}
EOF
        "$HOOKLINE" send resend --body "$body_dir/r.json" >/dev/null
        events=$((events + 2))
    done
done
rm -rf "$body_dir"

psql_in() {
    compose exec -T postgres psql -U hookline -d hookline -tAc "$1"
}
stored() { [ "$(psql_in 'SELECT count(*) FROM delivery_events' | tr -d '[:space:]')" = "$events" ]; }
wait_for "$events events stored" 60 stored
say "$events events stored by the workers"

scraped() {
    curl -fsS http://127.0.0.1:9090/api/v1/targets | python3 -c '
import json, sys
want = int(sys.argv[1]) + 1  # every worker and ingest
active = json.load(sys.stdin)["data"]["activeTargets"]
up = [t for t in active if t["health"] == "up"]
sys.exit(0 if len(up) >= want else 1)' "$WORKERS"
}
wait_for "Prometheus scraping ingest and $WORKERS workers" 90 scraped
say "Prometheus scrapes ingest and $WORKERS workers"

say "Stopping the workers: each exits by itself within its grace period (no SIGKILL)"
compose stop worker >/dev/null 2>&1
for id in $(compose ps -q worker); do
    code="$(docker inspect -f '{{.State.ExitCode}}' "$id")"
    [ "$code" = 0 ] || die "worker container $id exited with $code (137 is Docker's SIGKILL)"
done
say "Compose smoke passed."
