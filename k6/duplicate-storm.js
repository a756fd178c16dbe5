// A duplicate storm: a provider retrying the same few events over and over. Every retry must be
// answered 200 and flagged `duplicate` inside the dedup window; the events are stored once.
//   EVENTS (distinct events, default 100), RATE (req/s, default 1000), DURATION (default 30s),
//   P99_MS (default 50)
import http from 'k6/http';
import { check } from 'k6';
import { Rate } from 'k6/metrics';
import { signedResend, resendBody } from './lib.js';

const EVENTS = parseInt(__ENV.EVENTS || '100', 10);
// The p99 latency bound, ms (default 50): the CI smoke, which only checks that the scripts work,
// passes a loose one, as a timing bound on a shared 2-core box is not what it tests.
const P99_MS = parseInt(__ENV.P99_MS || '50', 10);
// Answers flagged `duplicate: true`: after the first round, nearly all of them.
const duplicates = new Rate('duplicate_answers');

export const options = {
  scenarios: {
    storm: {
      executor: 'constant-arrival-rate', rate: parseInt(__ENV.RATE || '1000', 10), timeUnit: '1s',
      duration: __ENV.DURATION || '30s', preAllocatedVUs: 50, maxVUs: 400,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: [`p(99)<${P99_MS}`],
    checks: ['rate>0.99'],
    duplicate_answers: ['rate>0.5'],
  },
};

// One run id for every VU (setup runs once), so all VUs resend the same events.
export function setup() {
  return { run: __ENV.RUN_ID || `${Date.now()}` };
}

export default function (data) {
  const RUN = data.run;
  const n = Math.floor(Math.random() * EVENTS);
  // Same id and same body every time for event n (the body's timestamps are fixed too).
  const body = JSON.stringify({
    type: 'email.delivered', created_at: '2026-11-23T10:00:00.000Z',
    data: { created_at: '2026-11-23T10:00:00.000Z', email_id: `k6d-${RUN}-${n}`, to: ['someone@example.com'] },
  });
  const r = signedResend(`k6d_${RUN}_${n}`, body);
  const res = http.post(r.url, r.body, r.params);
  check(res, { '200': (x) => x.status === 200 });
  duplicates.add(res.status === 200 && res.json('duplicate') === true);
}
