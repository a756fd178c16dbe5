// A short soak: a moderate constant rate for a while, both providers, to catch leaks and drift
// (watch RSS and the worker's lag on the Grafana dashboard meanwhile).
//   RATE (per provider, default 1000), DURATION (default 10m)
import http from 'k6/http';
import { check } from 'k6';
import { signedResend, signedTelnyx, resendBody, eventId } from './lib.js';

const RATE = parseInt(__ENV.RATE || '1000', 10);
const DURATION = __ENV.DURATION || '10m';

export const options = {
  scenarios: {
    resend: {
      executor: 'constant-arrival-rate', exec: 'resend', rate: RATE, timeUnit: '1s',
      duration: DURATION, preAllocatedVUs: 50, maxVUs: 400,
    },
    telnyx: {
      executor: 'constant-arrival-rate', exec: 'telnyx', rate: RATE, timeUnit: '1s',
      duration: DURATION, preAllocatedVUs: 50, maxVUs: 400,
    },
  },
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
