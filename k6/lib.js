// Shared by the k6 scenarios: where ingest is, and correctly signed requests.
//
// Resend requests are signed here, in the script (k6/crypto has HMAC-SHA256, the Svix scheme).
// Telnyx signs with Ed25519, which k6 cannot, so Telnyx requests come from fixtures that
// `hookline fixtures telnyx` pre-signs right before the run (k6/run.sh does it): the timestamps
// must be within ingest's tolerance (5 minutes by default) when they are sent.
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';
import { Counter } from 'k6/metrics';

// Distinct events sent, per provider: compare with what was stored (`hookline check`, the
// workers' webhook_stored_events_total) after the run.
export const distinctEvents = new Counter('distinct_events');

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const SECRET = __ENV.RESEND_WEBHOOK_SECRET || '';
const KEY = SECRET ? encoding.b64decode(SECRET.split(',')[0].replace(/^whsec_/, '')) : null;

// Unique per VU and iteration, so every request is a new event unless a scenario wants repeats.
export function eventId(prefix) {
  return `${prefix}_${__VU}_${__ITER}_${Date.now()}`;
}

export function resendBody(type, emailId) {
  return JSON.stringify({
    type,
    created_at: new Date().toISOString(),
    data: {
      created_at: new Date().toISOString(),
      email_id: emailId,
      from: 'Acme <onboarding@resend.dev>',
      to: ['someone@example.com'],
      subject: 'k6',
    },
  });
}

// A Resend webhook exactly as Resend (Svix) signs it: HMAC-SHA256 over "id.timestamp.body".
export function signedResend(id, body) {
  if (!KEY) throw new Error('RESEND_WEBHOOK_SECRET is not set (k6/run.sh sources .hookline/dev.env)');
  const ts = Math.floor(Date.now() / 1000).toString();
  const sig = crypto.hmac('sha256', KEY, `${id}.${ts}.${body}`, 'base64');
  return {
    url: `${BASE_URL}/webhooks/resend`,
    body,
    params: {
      headers: {
        'content-type': 'application/json',
        'svix-id': id,
        'svix-timestamp': ts,
        'svix-signature': `v1,${sig}`,
      },
      tags: { provider: 'resend' },
    },
  };
}

// Pre-signed Telnyx requests (a JSON array of {headers, body}), loaded once and shared by VUs.
export const telnyxFixtures = new SharedArray('telnyx', () => {
  const path = __ENV.TELNYX_FIXTURES;
  return path ? JSON.parse(open(path)) : [];
});

// The next pre-signed Telnyx request: fixture number `iterationInTest` of this scenario, unique
// across VUs, so every request is a distinct event. Running out is an error, never a silent
// repeat: k6/run.sh signs RATE x DURATION of them.
export function signedTelnyx() {
  if (telnyxFixtures.length === 0) throw new Error('TELNYX_FIXTURES is not set (k6/run.sh makes it)');
  const i = exec.scenario.iterationInTest;
  if (i >= telnyxFixtures.length) {
    exec.test.abort(`Telnyx fixtures exhausted after ${i} requests: raise FIXTURES_COUNT`);
  }
  const f = telnyxFixtures[i];
  const headers = Object.assign({ 'content-type': 'application/json' }, f.headers);
  return { url: `${BASE_URL}/webhooks/telnyx`, body: f.body, params: { headers, tags: { provider: 'telnyx' } } };
}

// One constant-arrival-rate scenario per provider, calling the script's `resend` and `telnyx`.
export function perProviderScenarios(rate, duration) {
  const scenario = (exec) => ({
    executor: 'constant-arrival-rate', exec, rate, timeUnit: '1s', duration,
    preAllocatedVUs: 50, maxVUs: 400,
  });
  return { resend: scenario('resend'), telnyx: scenario('telnyx') };
}
