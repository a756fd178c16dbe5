#!/usr/bin/env python3
"""Writes signature test vectors for hookline, signed by independent implementations.

Resend vectors are signed with the official `svix` Python library (svix.webhooks.Webhook.sign),
Telnyx vectors with PyNaCl (libsodium's Ed25519), and the generic sources in `examples/` and
`testdata/generic/templated.toml` with Python's own `hmac` module. hookline's Rust verifiers are tested against
these files, so a bug shared by our signer and our verifier cannot hide.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install svix pynacl
    /tmp/v/bin/python testdata/make_vectors.py
"""
import base64
import hashlib
import hmac
import json
import os
from datetime import datetime, timezone

import nacl.signing
from svix.webhooks import Webhook

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1795168800  # 2026-11-20T10:00:00Z; verifiers are called with this as "now"
TOLERANCE = 300


def resend_body(kind, email_id, extra=""):
    return (
        '{"type":"%s","created_at":"2026-11-20T10:00:00.000Z","data":{"created_at":"2026-11-20T09:59:58.000Z",'
        '"email_id":"%s","from":"Acme <onboarding@resend.dev>","to":["delivered@resend.dev"],'
        '"subject":"Your order"%s}}' % (kind, email_id, extra)
    )


def svix_sign(secret, msg_id, ts, body):
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=timezone.utc), body)


def resend_vectors():
    current = "whsec_" + base64.b64encode(b"hookline-resend-current-secret!!").decode()
    previous = "whsec_" + base64.b64encode(b"hookline-resend-previous-secret!").decode()
    unknown = "whsec_" + base64.b64encode(b"somebody-else's-signing-secret!!").decode()
    body = resend_body("email.delivered", "4ef9a417-02e9-4d39-ad75-9611e0fcc33c")
    cases = []

    def case(name, expect, msg_id, ts, sig, body=body):
        cases.append({
            "name": name,
            "expect": expect,
            "headers": {"svix-id": msg_id, "svix-timestamp": str(ts), "svix-signature": sig},
            "body": body,
        })

    case("valid", "ok", "msg_2mHn6fW1", NOW, svix_sign(current, "msg_2mHn6fW1", NOW, body))
    case("valid_4min_old", "ok", "msg_2mHn6fW2", NOW - 240, svix_sign(current, "msg_2mHn6fW2", NOW - 240, body))
    case("rotated_previous_secret", "ok", "msg_2mHn6fW3", NOW, svix_sign(previous, "msg_2mHn6fW3", NOW, body))
    both = svix_sign(unknown, "msg_2mHn6fW4", NOW, body) + " " + svix_sign(current, "msg_2mHn6fW4", NOW, body)
    case("several_signatures_one_valid", "ok", "msg_2mHn6fW4", NOW, both)
    bounced = resend_body("email.bounced", "4ef9a417-02e9-4d39-ad75-9611e0fcc33c",
                          ',"bounce":{"message":"Mailbox does not exist","subType":"General","type":"Permanent"}')
    case("valid_bounce", "ok", "msg_2mHn6fW5", NOW, svix_sign(current, "msg_2mHn6fW5", NOW, bounced), bounced)
    case("unknown_secret", "mismatch", "msg_2mHn6fW6", NOW, svix_sign(unknown, "msg_2mHn6fW6", NOW, body))
    case("tampered_body", "mismatch", "msg_2mHn6fW7", NOW,
         svix_sign(current, "msg_2mHn6fW7", NOW, body), body.replace("delivered", "bounced", 1))
    case("tampered_id", "mismatch", "msg_2mHn6fW8", NOW, svix_sign(current, "msg_OTHER", NOW, body))
    case("tampered_timestamp", "mismatch", "msg_2mHn6fW9", NOW - 1, svix_sign(current, "msg_2mHn6fW9", NOW, body))
    case("stale_timestamp", "stale_timestamp", "msg_2mHn6fWa", NOW - 301,
         svix_sign(current, "msg_2mHn6fWa", NOW - 301, body))
    case("future_timestamp", "stale_timestamp", "msg_2mHn6fWb", NOW + 301,
         svix_sign(current, "msg_2mHn6fWb", NOW + 301, body))
    case("unsupported_version_only", "malformed_header", "msg_2mHn6fWc", NOW,
         svix_sign(current, "msg_2mHn6fWc", NOW, body).replace("v1,", "v2,"))
    return {"now": NOW, "tolerance_secs": TOLERANCE, "secrets": [current, previous], "cases": cases}


def telnyx_body(event_type, status, event_id, message_id):
    return (
        '{"data":{"event_type":"%s","id":"%s","occurred_at":"2026-11-20T09:59:59.512+00:00",'
        '"payload":{"completed_at":null,"cost":{"amount":"0.0040","currency":"USD"},"direction":"outbound",'
        '"errors":[],"from":{"carrier":"Telnyx","line_type":"Wireless","phone_number":"+13125550100"},'
        '"id":"%s","messaging_profile_id":"4001767e-ce0f-4cae-9d5f-0d5e636e7809","parts":1,'
        '"text":"Your code is 123456","to":[{"carrier":"T-MOBILE USA, INC.","line_type":"Wireless",'
        '"phone_number":"+13125550123","status":"%s"}],"type":"SMS"},"record_type":"event"},'
        '"meta":{"attempt":1,"delivered_to":"https://hooks.example.com/webhooks/telnyx"}}'
    ) % (event_type, event_id, message_id, status)


def telnyx_vectors():
    seed = bytes(range(1, 33))
    key = nacl.signing.SigningKey(seed)
    other = nacl.signing.SigningKey(bytes(range(101, 133)))
    public = base64.b64encode(bytes(key.verify_key)).decode()

    def sign(k, ts, body):
        return base64.b64encode(k.sign(f"{ts}|{body}".encode()).signature).decode()

    body = telnyx_body("message.finalized", "delivered", "5fc5e8d4-9c3b-4a5e-9bd6-2f0b6a1c7d01",
                       "40317a7e-3f5c-4d1e-8c47-0b1f1a6c2e99")
    cases = []

    def case(name, expect, ts, sig, body=body):
        cases.append({
            "name": name,
            "expect": expect,
            "headers": {"telnyx-signature-ed25519": sig, "telnyx-timestamp": str(ts)},
            "body": body,
        })

    case("valid", "ok", NOW, sign(key, NOW, body))
    case("valid_4min_old", "ok", NOW - 240, sign(key, NOW - 240, body))
    sent = telnyx_body("message.sent", "sent", "5fc5e8d4-9c3b-4a5e-9bd6-2f0b6a1c7d02",
                       "40317a7e-3f5c-4d1e-8c47-0b1f1a6c2e99")
    case("valid_sent", "ok", NOW, sign(key, NOW, sent), sent)
    case("other_key", "mismatch", NOW, sign(other, NOW, body))
    case("tampered_body", "mismatch", NOW, sign(key, NOW, body), body.replace("delivered", "delivery_failed"))
    case("tampered_timestamp", "mismatch", NOW - 1, sign(key, NOW, body))
    case("stale_timestamp", "stale_timestamp", NOW - 301, sign(key, NOW - 301, body))
    case("future_timestamp", "stale_timestamp", NOW + 301, sign(key, NOW + 301, body))
    case("truncated_signature", "malformed_header", NOW, sign(key, NOW, body)[:40])
    return {
        "now": NOW,
        "tolerance_secs": TOLERANCE,
        "public_key": public,
        "signing_seed_for_tests_only": base64.b64encode(seed).decode(),
        "cases": cases,
    }


def github_vectors():
    """examples/github-style.toml: sha256=<hex HMAC-SHA256 of the body>, ids in headers."""
    secret = "hookline-github-style-secret"
    cases = []

    def body(message_id, status, error=""):
        return ('{"action":"status","message":{"id":"%s","status":"%s","updated_at":"2026-11-20T09:59:%02dZ"%s}}'
                % (message_id, status, len(status), error))

    def case(name, expect, delivery, event, b, sig, decoded=None):
        cases.append({
            "name": name,
            "expect": expect,
            "headers": {"X-GitHub-Delivery": delivery, "X-GitHub-Event": event, "X-Hub-Signature-256": sig},
            "body": b,
            "decoded": decoded,
        })

    def sign(b, key=secret):
        return "sha256=" + hmac.new(key.encode(), b.encode(), hashlib.sha256).hexdigest()

    b = body("gh-msg-1", "delivered")
    case("delivered", "ok", "d-0001", "message_status", b, sign(b),
         {"event_id": "d-0001", "message_id": "gh-msg-1", "status": "delivered", "engagement": None})
    b = body("gh-msg-2", "failed", ',"error":{"code":"30007","message":"Carrier violation"}')
    case("failed_with_error", "ok", "d-0002", "message_status", b, sign(b),
         {"event_id": "d-0002", "message_id": "gh-msg-2", "status": "failed", "engagement": None,
          "error_code": "30007", "error_description": "Carrier violation"})
    b = body("gh-msg-1", "read")
    case("read_is_an_engagement", "ok", "d-0003", "message_status", b, sign(b),
         {"event_id": "d-0003", "message_id": "gh-msg-1", "status": None, "engagement": "opened"})
    b = body("gh-msg-3", "delivered")
    case("wrong_secret", "mismatch", "d-0004", "message_status", b, sign(b, "someone-else"))
    case("tampered_body", "mismatch", "d-0005", "message_status", b.replace("gh-msg-3", "gh-msg-4"), sign(b))
    case("missing_prefix", "malformed_header", "d-0006", "message_status", b, sign(b)[len("sha256="):])
    case("uppercase_hex", "ok", "d-0007", "message_status", b, "sha256=" + sign(b)[7:].upper(),
         {"event_id": "d-0007", "message_id": "gh-msg-3", "status": "delivered", "engagement": None})
    return {"now": NOW, "secret": secret, "cases": cases}


def respondio_vectors():
    """examples/respondio-style.toml: base64 HMAC-SHA256 of the body in X-Webhook-Signature."""
    secret = "hookline-respondio-style-signing-key"
    cases = []

    def body(event_id, message_id, status, ts, msg=""):
        return ('{"event_type":"message.status","event_id":"%s","contact":{"id":1001},'
                '"message":{"messageId":%d,"channelId":7,"status":{"value":"%s","timestamp":%d%s}}}'
                % (event_id, message_id, status, ts, msg))

    def sign(b, key=secret):
        return base64.b64encode(hmac.new(key.encode(), b.encode(), hashlib.sha256).digest()).decode()

    def case(name, expect, b, sig, decoded=None):
        cases.append({"name": name, "expect": expect, "headers": {"X-Webhook-Signature": sig},
                      "body": b, "decoded": decoded})

    b = body("ev-1", 900001, "delivered", NOW - 30)
    case("delivered", "ok", b, sign(b),
         {"event_id": "ev-1", "message_id": "900001", "status": "delivered", "engagement": None})
    b = body("ev-2", 900002, "failed", NOW - 20, ',"message":"Number not on WhatsApp"')
    case("failed", "ok", b, sign(b),
         {"event_id": "ev-2", "message_id": "900002", "status": "failed", "engagement": None,
          "error_description": "Number not on WhatsApp"})
    case("wrong_key", "mismatch", b, sign(b, "another-key"))
    case("tampered", "mismatch", b.replace("failed", "delivered"), sign(b))
    case("not_base64", "malformed_header", b, "%%%")
    return {"now": NOW, "secret": secret, "cases": cases}


def templated_vectors():
    """testdata/generic/templated.toml: base64 HMAC-SHA512 over
    "{timestamp}.{X-Request-Id}.{body}", the timestamp in milliseconds in X-Timestamp."""
    secret = "hookline-templated-signing-key"
    cases = []

    def body(message_id, status, at):
        return '{"type":"status","id":"%s","status":"%s","at":"%s"}' % (message_id, status, at)

    def sign(ts_ms, request_id, b, key=secret):
        content = "%s.%s.%s" % (ts_ms, request_id, b)
        return base64.b64encode(hmac.new(key.encode(), content.encode(), hashlib.sha512).digest()).decode()

    def case(name, expect, ts_ms, request_id, b, sig, decoded=None):
        cases.append({"name": name, "expect": expect,
                      "headers": {"X-Timestamp": str(ts_ms), "X-Request-Id": request_id,
                                  "X-Signature": sig},
                      "body": b, "decoded": decoded})

    ts = NOW * 1000 - 1234  # milliseconds, a little before "now"
    b = body("tm-1", "delivered", "2026-11-20T09:59:58Z")
    case("delivered", "ok", ts, "req-1", b, sign(ts, "req-1", b),
         {"event_id": "req-1", "message_id": "tm-1", "status": "delivered", "engagement": None})
    b = body("tm-2", "sent", "2026-11-20T09:59:50Z")
    case("sent", "ok", ts, "req-2", b, sign(ts, "req-2", b),
         {"event_id": "req-2", "message_id": "tm-2", "status": "sent", "engagement": None})
    case("other_request_id", "mismatch", ts, "req-3", b, sign(ts, "req-2", b))
    case("other_timestamp", "mismatch", ts + 1, "req-2", b, sign(ts, "req-2", b))
    case("wrong_secret", "mismatch", ts, "req-2", b, sign(ts, "req-2", b, "another-key"))
    old_ts = (NOW - TOLERANCE - 1) * 1000
    case("stale", "stale_timestamp", old_ts, "req-2", b, sign(old_ts, "req-2", b))
    return {"now": NOW, "secret": secret, "cases": cases}


def write(path, data):
    with open(os.path.join(HERE, path), "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    write("resend/vectors.json", resend_vectors())
    write("telnyx/vectors.json", telnyx_vectors())
    os.makedirs(os.path.join(HERE, "generic"), exist_ok=True)
    write("generic/github-style.json", github_vectors())
    write("generic/respondio-style.json", respondio_vectors())
    write("generic/templated.json", templated_vectors())
