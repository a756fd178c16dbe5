// Ramp the arrival rate until ingest breaks (p99 over 100 ms or errors over 1 %), then stop:
// the last healthy stage is the breaking point. Resend only (signed in the script).
//   START (req/s, default 500), PEAK (default 20000), RAMP (default 2m)
import http from 'k6/http';
import { check } from 'k6';
import { signedResend, resendBody, eventId } from './lib.js';
import { distinctEvents } from './lib.js';

const START = parseInt(__ENV.START || '500', 10);
const PEAK = parseInt(__ENV.PEAK || '20000', 10);
const RAMP = __ENV.RAMP || '2m';

export const options = {
  scenarios: {
    ramp: {
      executor: 'ramping-arrival-rate', startRate: START, timeUnit: '1s',
      preAllocatedVUs: 200, maxVUs: 2000,
      stages: [{ target: PEAK, duration: RAMP }],
    },
  },
  thresholds: {
    http_req_failed: [{ threshold: 'rate<0.01', abortOnFail: true, delayAbortEval: '5s' }],
    http_req_duration: [{ threshold: 'p(99)<100', abortOnFail: true, delayAbortEval: '5s' }],
  },
};

export default function () {
  const r = signedResend(eventId('k6b'), resendBody('email.delivered', `k6b-${__VU}-${__ITER}`));
  const res = http.post(r.url, r.body, r.params);
  distinctEvents.add(1, r.params.tags);
  check(res, { '200': (x) => x.status === 200 });
}
