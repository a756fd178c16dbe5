// Constant arrival rate per provider, correctly signed: the steady state.
//   RATE (per provider, req/s, default 500), DURATION (default 30s), P99_MS (default 50)
import http from 'k6/http';
import { check } from 'k6';
import { signedResend, signedTelnyx, resendBody, eventId, perProviderScenarios } from './lib.js';
import { distinctEvents } from './lib.js';

const RATE = parseInt(__ENV.RATE || '500', 10);
const DURATION = __ENV.DURATION || '30s';
// The p99 latency bound, ms (default 50): the CI smoke, which only checks that the scripts work,
// passes a loose one, as a timing bound on a shared 2-core box is not what it tests.
const P99_MS = parseInt(__ENV.P99_MS || '50', 10);

export const options = {
  scenarios: perProviderScenarios(RATE, DURATION),
  thresholds: {
    // Listed so the summary shows how many distinct events each provider was sent.
    'distinct_events{provider:resend}': ['count>0'],
    'distinct_events{provider:telnyx}': ['count>0'],
    http_req_failed: ['rate<0.01'],
    'http_req_duration{provider:resend}': [`p(99)<${P99_MS}`],
    'http_req_duration{provider:telnyx}': [`p(99)<${P99_MS}`],
    checks: ['rate>0.99'],
  },
};

export function resend() {
  const id = eventId('k6c');
  const r = signedResend(id, resendBody(__ITER % 2 ? 'email.delivered' : 'email.sent', `k6c-${__VU}-${__ITER >> 1}`));
  const res = http.post(r.url, r.body, r.params);
  distinctEvents.add(1, r.params.tags);
  check(res, { 'resend 200': (x) => x.status === 200 });
}

export function telnyx() {
  const r = signedTelnyx();
  const res = http.post(r.url, r.body, r.params);
  distinctEvents.add(1, r.params.tags);
  check(res, { 'telnyx 200': (x) => x.status === 200 });
}
