#!/usr/bin/env python3
"""Postmark webhook vectors. Postmark signs nothing: a webhook carries basic-auth credentials
(RFC 7617, built here with Python's base64) or a secret header set through its Webhooks API.
The bodies are Postmark's documented examples, one per RecordType (postmarkapp.com/developer/
webhooks/*-webhook), with the status hookline must decode each to.

    python3 testdata/postmark/make_vectors.py
"""
import base64
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CREDENTIALS = ["hookline:pm-current-s3cret", "hookline:pm-previous-s3cret"]  # test-only
TOKEN = "pm-header-token-0123456789"


def basic(cred):
    return "Basic " + base64.b64encode(cred.encode()).decode()


M = "883953f4-6105-42a2-a16a-77a8eac79483"
bodies = {
    "delivery": ("delivered", {"RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
        "MessageID": M, "Recipient": "john@example.com", "Tag": "welcome-email",
        "DeliveredAt": "2026-11-20T09:59:58Z", "Details": "Test delivery webhook details",
        "Metadata": {"example": "value"}}),
    "hard_bounce": ("bounced", {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce",
        "TypeCode": 1, "Name": "Hard bounce", "Tag": "Test", "MessageID": M, "ServerID": 23,
        "MessageStream": "outbound", "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "Test bounce details", "Email": "john@example.com", "From": "sender@example.com",
        "BouncedAt": "2026-11-20T09:59:59Z", "DumpAvailable": True, "Inactive": True,
        "CanActivate": True, "Subject": "Test subject", "Metadata": {}}),
    "soft_bounce": ("failed", {"RecordType": "Bounce", "ID": 4323372036854775808, "Type": "SoftBounce",
        "TypeCode": 4096, "Name": "Soft bounce", "MessageID": M, "ServerID": 23,
        "MessageStream": "outbound", "Description": "Unable to temporarily deliver this message.",
        "Details": "smtp;452 4.2.2 mailbox full", "Email": "john@example.com",
        "BouncedAt": "2026-11-20T09:59:59Z", "Inactive": False, "CanActivate": True}),
    "spam_complaint": ("complained", {"RecordType": "SpamComplaint", "ID": 42, "Type": "SpamComplaint",
        "TypeCode": 100001, "Name": "Spam complaint", "MessageID": M, "ServerID": 23,
        "MessageStream": "outbound", "Description": "The subscriber explicitly marked this message as spam.",
        "Details": "Test spam complaint details", "Email": "john@example.com",
        "From": "sender@example.com", "BouncedAt": "2026-11-20T10:00:01.123456Z",
        "DumpAvailable": True, "Inactive": True, "CanActivate": False, "Subject": "Test subject"}),
    "open": ("opened", {"RecordType": "Open", "FirstOpen": True,
        "Client": {"Name": "Chrome 35", "Company": "Google", "Family": "Chrome"},
        "OS": {"Name": "OS X 10.7 Lion", "Company": "Apple Computer, Inc.", "Family": "OS X 10"},
        "Platform": "WebMail", "UserAgent": "Mozilla/5.0", "ReadSeconds": 5,
        "Geo": {"CountryISOCode": "RS", "City": "Novi Sad", "IP": "188.2.95.4"}, "MessageID": M,
        "MessageStream": "outbound", "ReceivedAt": "2026-11-20T10:00:02Z", "Tag": "welcome-email",
        "Recipient": "john@example.com", "Metadata": {}}),
    "click": ("clicked", {"RecordType": "Click", "ClickLocation": "HTML", "Platform": "Desktop",
        "UserAgent": "Mozilla/5.0", "OriginalLink": "https://example.com", "MessageID": M,
        "MessageStream": "outbound", "ReceivedAt": "2026-11-20T10:00:03Z", "Tag": "welcome-email",
        "Recipient": "john@example.com", "Metadata": {}}),
    "subscription_change": ("", {"RecordType": "SubscriptionChange", "MessageID": M, "ServerID": 23,
        "MessageStream": "outbound", "ChangedAt": "2026-11-20T10:00:04Z",
        "Recipient": "john@example.com", "Origin": "Recipient", "SuppressSending": True,
        "SuppressionReason": "HardBounce", "Tag": "welcome-email", "Metadata": {}}),
}

cases = []


def case(name, expect, headers, body, status=None):
    c = {"name": name, "expect": expect, "url": "https://hooks.example.com/webhooks/postmark",
         "headers": dict({"content-type": "application/json"}, **headers), "body": body}
    if status is not None:
        c["status"] = status
    cases.append(c)


for name, (status, body) in bodies.items():
    case(name, "ok", {"authorization": basic(CREDENTIALS[0])}, json.dumps(body), status)
delivery = json.dumps(bodies["delivery"][1])
case("previous_credentials", "ok", {"authorization": basic(CREDENTIALS[1])}, delivery)
case("header_token", "ok", {"x-hookline-token": TOKEN}, delivery)
case("wrong_password", "mismatch", {"authorization": basic("hookline:pm-current-s3creT")}, delivery)
case("wrong_user", "mismatch", {"authorization": basic("hookline2:pm-current-s3cret")}, delivery)
case("wrong_token", "mismatch", {"x-hookline-token": TOKEN + "x"}, delivery)
case("bearer_scheme", "malformed_header", {"authorization": "Bearer " + TOKEN}, delivery)
case("no_credentials", "missing_header", {}, delivery)

out = {"settings": {"POSTMARK_WEBHOOK_CREDENTIALS": CREDENTIALS, "POSTMARK_WEBHOOK_TOKEN": [TOKEN]},
       "now": 1795168800, "tolerance_secs": 300, "cases": cases}
with open(os.path.join(HERE, "vectors.json"), "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
print("wrote", len(cases), "cases")
