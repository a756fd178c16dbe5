// A short soak: a moderate constant rate for a while, both providers, to catch leaks and drift
// (watch RSS and the worker's lag on the Grafana dashboard meanwhile).
//   RATE (per provider, default 300: what this 2-core machine sustains with k6 on it, and the
//   Telnyx fixtures one per request), DURATION (default 9m: the Telnyx fixtures' validity)
import http from 'k6/http';
import { check } from 'k6';
import { signedResend, signedTelnyx, resendBody, eventId, perProviderScenarios } from './lib.js';
import { distinctEvents } from './lib.js';

const RATE = parseInt(__ENV.RATE || '300', 10);
const DURATION = __ENV.DURATION || '9m';

export const options = {
  scenarios: perProviderScenarios(RATE, DURATION),
  thresholds: {
    // Listed so the summary shows how many distinct events each provider was sent.
    'distinct_events{provider:resend}': ['count>0'],
    'distinct_events{provider:telnyx}': ['count>0'],
    http_req_failed: ['rate<0.001'],
    http_req_duration: ['p(99)<50'],
  },
};

export function resend() {
  const r = signedResend(eventId('k6s'), resendBody('email.delivered', `k6s-${__VU}-${__ITER}`));
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
