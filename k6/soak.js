// A short soak: a moderate constant rate for a while, both providers, to catch leaks and drift
// (watch RSS and the worker's lag on the Grafana dashboard meanwhile).
//   RATE (per provider, default 1000), DURATION (default 9m: the Telnyx fixtures' validity)
import http from 'k6/http';
import { check } from 'k6';
import { signedResend, signedTelnyx, resendBody, eventId, perProviderScenarios } from './lib.js';

const RATE = parseInt(__ENV.RATE || '1000', 10);
const DURATION = __ENV.DURATION || '9m';

export const options = {
  scenarios: perProviderScenarios(RATE, DURATION),
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_req_duration: ['p(99)<50'],
  },
};

export function resend() {
  const r = signedResend(eventId('k6s'), resendBody('email.delivered', `k6s-${__VU}-${__ITER}`));
  check(http.post(r.url, r.body, r.params), { 'resend 200': (x) => x.status === 200 });
}

export function telnyx() {
  const r = signedTelnyx(__VU * 1000000 + __ITER);
  check(http.post(r.url, r.body, r.params), { 'telnyx 200': (x) => x.status === 200 });
}
