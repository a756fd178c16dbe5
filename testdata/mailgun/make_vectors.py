#!/usr/bin/env python3
"""Mailgun webhook vectors, signed as Mailgun documents it ("Securing webhooks"): hex
HMAC-SHA256, keyed with the webhook signing key, of `timestamp` + `token`, with Python's own
`hmac` module. The signature sits in the body beside `event-data` and does not cover it.

    python3 testdata/mailgun/make_vectors.py
"""
import hashlib
import hmac
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1795168800
CURRENT = "key-0123456789abcdef0123456789abcdef"   # test-only signing keys
PREVIOUS = "key-fedcba9876543210fedcba9876543210"
UNKNOWN = "key-ffffffffffffffffffffffffffffffff"
MID = "20261120100000.1.48906CB188F1A454@example.org"


def sig(key, ts, token):
    return hmac.new(key.encode(), (str(ts) + token).encode(), hashlib.sha256).hexdigest()


def data(event, n, **extra):
    d = {"event": event, "id": "evt%020d" % n, "timestamp": NOW - 30 + n + 0.626182,
         "log-level": "info", "recipient": "Joan@Example.com", "recipient-domain": "example.com",
         "message": {"headers": {"message-id": MID, "to": "joan@example.com",
                                 "from": "john@example.org", "subject": "Test"}},
         "tags": [], "user-variables": {}}
    d.update(extra)
    return d


events = [
    ("accepted", data("accepted", 1), "queued"),
    ("delivered", data("delivered", 2, **{"delivery-status": {"tls": True, "code": 250, "message": "OK",
                                                            "attempt-no": 1, "description": ""}}), "delivered"),
    ("failed_permanent_bounce", data("failed", 3, severity="permanent", reason="bounce", **{
        "log-level": "error", "delivery-status": {"code": 550, "message": "5.1.1 no such user",
                                                  "attempt-no": 1, "description": ""}}), "bounced"),
    ("failed_suppress_bounce", data("failed", 4, severity="permanent", reason="suppress-bounce", **{
        "delivery-status": {"code": 605, "description": "Not delivering to previously bounced address",
                            "message": "", "attempt-no": 1}}), "suppressed"),
    ("failed_temporary", data("failed", 5, severity="temporary", reason="generic", **{
        "log-level": "warn", "delivery-status": {"code": 452, "message": "mailbox full",
                                                 "attempt-no": 1, "retry-seconds": 600}}), "delayed"),
    ("rejected", data("rejected", 6, reject={"reason": "no recipients"}), "failed"),
    ("opened", data("opened", 7), "opened"),
    ("clicked", data("clicked", 8, url="https://example.com/offer"), "clicked"),
    ("complained", data("complained", 9), "complained"),
    ("unsubscribed", data("unsubscribed", 10), ""),
]

cases = []


def case(name, expect, body, status=None):
    c = {"name": name, "expect": expect, "url": "https://hooks.example.com/webhooks/mailgun",
         "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
    if status is not None:
        c["status"] = status
    cases.append(c)


for i, (name, d, status) in enumerate(events):
    token = "%050x" % (0xA11CE + i)
    case(name, "ok", {"signature": {"timestamp": str(NOW), "token": token,
                                    "signature": sig(CURRENT, NOW, token)}, "event-data": d}, status)
token = "%050x" % 0xBEEF
delivered = events[1][1]
case("previous_key", "ok", {"signature": {"timestamp": str(NOW), "token": token,
                                          "signature": sig(PREVIOUS, NOW, token)}, "event-data": delivered})
case("eight_hour_old_retry", "ok", {"signature": {"timestamp": str(NOW - 8 * 3600), "token": token,
                                                  "signature": sig(CURRENT, NOW - 8 * 3600, token)},
                                    "event-data": delivered})
case("unknown_key", "mismatch", {"signature": {"timestamp": str(NOW), "token": token,
                                               "signature": sig(UNKNOWN, NOW, token)}, "event-data": delivered})
case("tampered_token", "mismatch", {"signature": {"timestamp": str(NOW), "token": token[:-1] + "0",
                                                  "signature": sig(CURRENT, NOW, token)}, "event-data": delivered})
case("tampered_timestamp", "mismatch", {"signature": {"timestamp": str(NOW - 1), "token": token,
                                                      "signature": sig(CURRENT, NOW, token)}, "event-data": delivered})
case("past_the_tolerance", "stale_timestamp", {"signature": {"timestamp": str(NOW - 32401), "token": token,
                                                             "signature": sig(CURRENT, NOW - 32401, token)},
                                               "event-data": delivered})
case("not_hex", "malformed_header", {"signature": {"timestamp": str(NOW), "token": token,
                                                   "signature": "zz" * 32}, "event-data": delivered})
case("no_signature", "missing_header", {"event-data": delivered})

out = {"settings": {"MAILGUN_WEBHOOK_SIGNING_KEY": [CURRENT, PREVIOUS]}, "now": NOW,
       "tolerance_secs": 300, "cases": cases}
with open(os.path.join(HERE, "vectors.json"), "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
print("wrote", len(cases), "cases")
