#!/usr/bin/env python3
"""SendGrid signed Event Webhook vectors: signed with Python's `cryptography` (ECDSA P-256,
SHA-256, DER signature over timestamp + body) and each verdict checked with sendgrid-python's
own helper, `sendgrid.helpers.eventwebhook.EventWebhook.verify_signature`.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install sendgrid==6.12.5 cryptography==51.0.1
    /tmp/v/bin/python testdata/sendgrid/make_vectors.py

ECDSA signatures are randomized: regenerating gives other signatures, the same verdicts. The
keys are derived from fixed test-only scalars.
"""
import base64
import json
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1795168800
CURRENT = ec.derive_private_key(0x6F0C2D7A1B3E4F5061728394A5B6C7D8E9F00112233445566778899AABBCCDD, ec.SECP256R1())
OTHER = ec.derive_private_key(0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF, ec.SECP256R1())
UNKNOWN = ec.derive_private_key(0x0FEDCBA987654321FEDCBA987654321FEDCBA987654321FEDCBA9876543210F, ec.SECP256R1())


def public_b64(key):
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def sign(key, ts, body):
    sig = key.sign((str(ts) + body).encode(), ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(sig).decode()


X = "XBg2anf2TqCy6WXKQFhieQ"
SGM = X + ".filter0001.16648.5515E0B88.0"


def ev(event, n, **extra):
    e = {"email": "ada@example.com", "timestamp": NOW - 60 + n, "smtp-id": "<%s@ismtpd-555>" % X,
         "event": event, "category": "cat facts", "sg_event_id": "sg-ev-%02d-%s" % (n, event),
         "sg_message_id": SGM}
    e.update(extra)
    return e


events = [
    (ev("processed", 1), "queued"),
    (ev("deferred", 2, response="400 try again later", attempt="5"), "delayed"),
    (ev("delivered", 3, response="250 OK", tls=1), "delivered"),
    (ev("open", 4, useragent="Mozilla/5.0", ip="192.0.2.1", sg_machine_open=False), "opened"),
    (ev("click", 5, url="https://example.com/offer", useragent="Mozilla/5.0"), "clicked"),
    (ev("bounce", 6, type="bounce", status="5.1.1", reason="550 5.1.1 unknown recipient",
        bounce_classification="Invalid Address"), "bounced"),
    (ev("bounce", 7, type="blocked", status="4.0.0", reason="blocked by reputation",
        bounce_classification="Reputation"), "failed"),
    (ev("dropped", 8, reason="Bounced Address", status="5.0.0"), "suppressed"),
    (ev("dropped", 9, reason="Invalid SMTPAPI header"), "failed"),
    (ev("spamreport", 10), "complained"),
    (ev("unsubscribe", 11), ""),
    (ev("group_unsubscribe", 12, asm_group_id=10, useragent="Mozilla/5.0", ip="192.0.2.1"), ""),
    (ev("group_resubscribe", 13, asm_group_id=10, useragent="Mozilla/5.0", ip="192.0.2.1"), ""),
]
batch = json.dumps([e for e, _ in events])
single = json.dumps([events[2][0]])
cases = []
helper = EventWebhook()


def case(name, expect, body, sig, ts, statuses=None):
    if sig is not None:
        verdicts = [helper.verify_signature(body, sig, str(ts), helper.convert_public_key_to_ecdsa(k))
                    for k in (public_b64(CURRENT), public_b64(OTHER))]
        library_ok = any(verdicts)
        # The helper checks no timestamp age: only signature verdicts are its to give.
        if expect in ("ok", "mismatch"):
            assert library_ok == (expect == "ok"), (name, verdicts)
    headers = {"content-type": "application/json"}
    if sig is not None:
        headers["x-twilio-email-event-webhook-signature"] = sig
    if ts is not None:
        headers["x-twilio-email-event-webhook-timestamp"] = str(ts)
    c = {"name": name, "expect": expect, "url": "https://hooks.example.com/webhooks/sendgrid",
         "headers": headers, "body": body}
    if statuses is not None:
        c["statuses"] = statuses
    cases.append(c)


case("batch_of_every_event", "ok", batch, sign(CURRENT, NOW, batch), NOW, [s for _, s in events])
case("second_webhook_key", "ok", single, sign(OTHER, NOW, single), NOW)
case("trailing_crlf_is_signed_too", "ok", single + "\r\n", sign(CURRENT, NOW, single + "\r\n"), NOW)
case("a_day_old_retry", "ok", single, sign(CURRENT, NOW - 86400, single), NOW - 86400)
case("unknown_key", "mismatch", single, sign(UNKNOWN, NOW, single), NOW)
case("tampered_body", "mismatch", single.replace("delivered", "bounce"), sign(CURRENT, NOW, single), NOW)
case("tampered_timestamp", "mismatch", single, sign(CURRENT, NOW, single), NOW - 1)
case("past_the_tolerance", "stale_timestamp", single, sign(CURRENT, NOW - 90001, single), NOW - 90001)
case("not_der", "malformed_header", single, base64.b64encode(b"not a signature").decode(), NOW)
case("missing_signature", "missing_header", single, None, NOW)
case("missing_timestamp", "missing_header", single, sign(CURRENT, NOW, single), None)

out = {"settings": {"SENDGRID_WEBHOOK_PUBLIC_KEY": [public_b64(CURRENT), public_b64(OTHER)]},
       "signing": {"SENDGRID_SIGNING_KEY": base64.b64encode(CURRENT.private_bytes(
           serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
           serialization.NoEncryption())).decode()},
       "now": NOW, "tolerance_secs": 300, "cases": cases}
with open(os.path.join(HERE, "vectors.json"), "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
print("wrote", len(cases), "cases")
