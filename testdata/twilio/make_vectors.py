#!/usr/bin/env python3
"""Twilio status-callback vectors, signed by twilio-python's own RequestValidator.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install twilio==9.13.0
    /tmp/v/bin/python testdata/twilio/make_vectors.py

Every case is also checked with RequestValidator.validate (the verdict Twilio's SDK gives), so
the file records the library's answers, not ours.
"""
import json
import os
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

HERE = os.path.dirname(os.path.abspath(__file__))
PRIMARY = "6f1d2a3b4c5d6e7f8091a2b3c4d5e6f7"    # test-only auth tokens
SECONDARY = "0a9b8c7d6e5f40312233445566778899"
UNKNOWN = "ffffffffffffffffffffffffffffffff"
# Where Twilio calls: a proxy serves ingest under /hookline (HOOKLINE_PUBLIC_URL names it).
URL = "https://hooks.example.com/hookline/webhooks/twilio?account=acme"


class Multi(dict):
    """A form with repeated names, as the validator reads Flask's MultiDict (getall)."""

    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs
        for k, v in pairs:
            self.setdefault(k, v)

    def getall(self, name):
        return [v for k, v in self.pairs if k == name]


def callback(sid, status, extra=()):
    pairs = [("AccountSid", "AC0123456789abcdef0123456789abcdef"), ("ApiVersion", "2010-04-01")]
    if status in ("undelivered", "failed"):
        pairs.append(("ErrorCode", "30003"))
    pairs += [("From", "+13125550100"), ("MessageSid", sid), ("MessageStatus", status),
              ("MessagingServiceSid", "MG0123456789abcdef0123456789abcdef"),
              ("SmsSid", sid), ("SmsStatus", status), ("To", "+13125550123")]
    if status in ("delivered", "undelivered"):
        pairs.append(("RawDlrDoneDate", "2611201000"))
    return pairs + list(extra)


def sign(token, url, pairs):
    return RequestValidator(token).compute_signature(url, Multi(pairs))


cases = []


def case(name, expect, pairs, signature, url=URL, status=None):
    body = urlencode(pairs)
    if signature is not None:
        library = RequestValidator(PRIMARY).validate(url, Multi(pairs), signature) or \
            RequestValidator(SECONDARY).validate(url, Multi(pairs), signature)
        assert library == (expect == "ok"), (name, library)
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    c = {"name": name, "expect": expect, "url": url, "headers": headers, "body": body}
    if status is not None:
        c["status"] = status
    cases.append(c)


statuses = {"queued": "queued", "accepted": "queued", "scheduled": "queued", "sending": "sending",
            "sent": "sent", "delivered": "delivered", "read": "delivered",
            "undelivered": "failed", "failed": "failed", "canceled": "failed",
            "partially_delivered": "failed", "receiving": None, "received": None}
for i, (raw, status) in enumerate(statuses.items()):
    pairs = callback("SM%032x" % i, raw)
    case("status_" + raw, "ok", pairs, sign(PRIMARY, URL, pairs), status=status or "")

pairs = callback("SMa1", "delivered")
case("secondary_token", "ok", pairs, sign(SECONDARY, URL, pairs), status="delivered")
port_url = URL.replace("example.com/", "example.com:443/")
case("signed_with_port_called_without", "ok", pairs, sign(PRIMARY, port_url, pairs))
case("signed_without_port_called_with", "ok", pairs, sign(PRIMARY, URL, pairs), url=port_url)
repeated = callback("SMa2", "sent", [("Tag", "b"), ("Tag", "a")])
case("repeated_field", "ok", repeated, sign(PRIMARY, URL, repeated))
spaces = callback("SMa3", "failed", [("ErrorMessage", "Unknown destination + more")])
case("spaces_and_plus_in_values", "ok", spaces, sign(PRIMARY, URL, spaces))
case("unknown_token", "mismatch", pairs, sign(UNKNOWN, URL, pairs))
tampered = callback("SMa1", "undelivered")
case("tampered_status", "mismatch", tampered, sign(PRIMARY, URL, pairs))
case("proxy_prefix_missing", "mismatch", pairs,
     sign(PRIMARY, URL.replace("/hookline", ""), pairs))
case("other_query", "mismatch", pairs, sign(PRIMARY, URL + "&x=1", pairs))
case("not_base64", "malformed_header", pairs, "not*base64!")
case("missing_signature", "missing_header", pairs, None)

out = {"settings": {"TWILIO_AUTH_TOKEN": [PRIMARY, SECONDARY]}, "now": 1795168800,
       "tolerance_secs": 300, "cases": cases}
with open(os.path.join(HERE, "vectors.json"), "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
print("wrote", len(cases), "cases")
