#!/usr/bin/env python3
"""Amazon SES event notifications through SNS: signed with Python's `cryptography` as SNS signs
them (RSA PKCS#1 v1.5 over "Key\\nValue\\n" of the documented fields in byte order;
SignatureVersion 1 = SHA1withRSA, 2 = SHA256withRSA), with a test-only certificate standing for
the one SNS serves at SigningCertURL. SES `Message` bodies follow AWS's documented examples.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install cryptography==51.0.1
    /tmp/v/bin/python testdata/ses/make_vectors.py

RSA PKCS#1 v1.5 signatures are deterministic: the output is the same every run, but the key
and certificate are made afresh; so the key is fixed in `key.pem` (test-only) once made.
"""
import base64
import datetime
import json
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1795168800
ISO = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
ROTATED_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem"


def key(name):
    path = os.path.join(HERE, name)
    if not os.path.exists(path):
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with open(path, "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def cert(k):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
         .serial_number(1).not_valid_before(datetime.datetime(2026, 1, 1))
         .not_valid_after(datetime.datetime(2028, 1, 1)).sign(k, hashes.SHA256()))
    return c.public_bytes(serialization.Encoding.PEM).decode()


CURRENT, ROTATED, FOREIGN = key("key.pem"), key("rotated-key.pem"), key("foreign-key.pem")
NOTIFICATION = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
CONFIRMATION = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]


def sign(k, m, version):
    fields = NOTIFICATION if m["Type"] == "Notification" else CONFIRMATION
    text = "".join("%s\n%s\n" % (f, m[f]) for f in fields if f in m)
    h = hashes.SHA1() if version == "1" else hashes.SHA256()
    return base64.b64encode(k.sign(text.encode(), padding.PKCS1v15(), h)).decode()


def sns(message, n, version="1", k=CURRENT, url=CERT_URL, ts=NOW, kind="Notification", **extra):
    m = {"Type": kind, "MessageId": "22b80b92-fdea-4c2c-8f9d-%012d" % n, "TopicArn": TOPIC,
         "Message": message if isinstance(message, str) else json.dumps(message),
         "Timestamp": ISO(ts), "SignatureVersion": version, "SigningCertURL": url,
         "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" + TOPIC + ":c9135db0"}
    m.update(extra)
    m["Signature"] = sign(k, m, version)
    return m


MID = "0100018c-ses-message-id-000000"
mail = {"timestamp": ISO(NOW - 60), "source": "sender@example.com", "messageId": MID,
        "destination": ["recipient@example.com"], "headersTruncated": False,
        "commonHeaders": {"from": ["sender@example.com"], "to": ["recipient@example.com"], "subject": "Hi"},
        "tags": {"ses:configuration-set": ["ConfigSet"]}}


def ses(kind, block=None, body=None, **m):
    e = {"eventType": kind, "mail": dict(mail, **m)}
    if block:
        e[block] = body
    return e


rcpt = [{"emailAddress": "recipient@example.com", "action": "failed", "status": "5.1.1",
         "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]
events = [
    ("send", ses("Send", "send", {}), "sent"),
    ("delivery", ses("Delivery", "delivery", {"timestamp": ISO(NOW - 50), "processingTimeMillis": 546,
                                               "recipients": ["recipient@example.com"], "smtpResponse": "250 2.6.0 Message received",
                                               "reportingMTA": "a8-70.smtp-out.amazonses.com"}), "delivered"),
    ("bounce_permanent", ses("Bounce", "bounce", {"bounceType": "Permanent", "bounceSubType": "General",
                                                   "bouncedRecipients": rcpt, "timestamp": ISO(NOW - 40),
                                                   "feedbackId": "0100-bounce", "reportingMTA": "dsn; mta.example.com"}), "bounced"),
    ("bounce_suppressed", ses("Bounce", "bounce", {"bounceType": "Permanent", "bounceSubType": "OnAccountSuppressionList",
                                                    "bouncedRecipients": [{"emailAddress": "recipient@example.com"}],
                                                    "timestamp": ISO(NOW - 40), "feedbackId": "0100-supp"}), "suppressed"),
    ("bounce_transient", ses("Bounce", "bounce", {"bounceType": "Transient", "bounceSubType": "MailboxFull",
                                                   "bouncedRecipients": [{"emailAddress": "recipient@example.com", "status": "4.2.2"}],
                                                   "timestamp": ISO(NOW - 40), "feedbackId": "0100-soft"}), "failed"),
    ("complaint", ses("Complaint", "complaint", {"complainedRecipients": [{"emailAddress": "recipient@example.com"}],
                                                  "timestamp": ISO(NOW - 30), "feedbackId": "0100-compl",
                                                  "complaintFeedbackType": "abuse"}), "complained"),
    ("reject", ses("Reject", "reject", {"reason": "Bad content"}), "failed"),
    ("delivery_delay", ses("DeliveryDelay", "deliveryDelay", {"delayType": "MailboxFull", "timestamp": ISO(NOW - 20),
                                                              "expirationTime": ISO(NOW + 3600),
                                                              "delayedRecipients": [{"emailAddress": "recipient@example.com", "status": "4.2.2",
                                                                                     "diagnosticCode": "smtp; 452 4.2.2 mailbox full"}]}), "delayed"),
    ("rendering_failure", ses("Rendering Failure", "failure", {"templateName": "Welcome",
                                                               "errorMessage": "Attribute 'name' is not present"}), "failed"),
    ("open", ses("Open", "open", {"timestamp": ISO(NOW - 10), "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1"}), "opened"),
    ("click", ses("Click", "click", {"timestamp": ISO(NOW - 5), "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1",
                                     "link": "https://example.com/offer", "linkTags": {}}), "clicked"),
    ("subscription", ses("Subscription", "subscription", {"contactList": "News", "timestamp": ISO(NOW - 5),
                                                          "source": "unsubscribe@example.com"}), ""),
    ("legacy_notification_bounce", {"notificationType": "Bounce", "mail": mail,
                                    "bounce": {"bounceType": "Permanent", "bounceSubType": "NoEmail",
                                               "bouncedRecipients": rcpt, "timestamp": ISO(NOW - 40)}}, "bounced"),
]

cases = []


def case(name, expect, m, status=None, headers=None):
    c = {"name": name, "expect": expect, "url": "https://hooks.example.com/webhooks/ses",
         "headers": dict({"content-type": "text/plain; charset=UTF-8",
                          "x-amz-sns-message-type": m.get("Type", "Notification")}, **(headers or {})),
         "body": json.dumps(m)}
    if status is not None:
        c["status"] = status
    cases.append(c)


for i, (name, e, status) in enumerate(events):
    case(name, "ok", sns(e, i, version="1" if i % 2 else "2"), status)
delivery = events[1][1]
case("rotated_certificate", "ok", sns(delivery, 50, k=ROTATED, url=ROTATED_URL))
case("fifty_minute_old_retry", "ok", sns(delivery, 51, ts=NOW - 3000))
case("subscription_confirmation", "ok", sns("You have chosen to subscribe to the topic " + TOPIC, 52,
                                            kind="SubscriptionConfirmation", Token="2336412f37fb687f5d51e6e2425c464de",
                                            SubscribeURL="https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=2336412f37fb687f5d51e6e2425c464de"), "")
case("foreign_certificate_host", "malformed_header",
     sns(delivery, 53, k=FOREIGN, url="https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-x.pem"))
case("certificate_url_not_https", "malformed_header",
     sns(delivery, 54, url=CERT_URL.replace("https://", "http://")))
case("signed_by_another_key", "mismatch", sns(delivery, 55, k=FOREIGN))
tampered = sns(delivery, 56)
tampered["Message"] = tampered["Message"].replace("Delivery", "Bounce", 1)
case("tampered_message", "mismatch", tampered)
other_topic = sns(delivery, 57, TopicArn="arn:aws:sns:us-east-1:999999999999:someone-elses-topic")
case("topic_not_allowed", "mismatch", other_topic)
case("past_the_tolerance", "stale_timestamp", sns(delivery, 58, ts=NOW - 3901))
case("unknown_signature_version", "malformed_header", sns(delivery, 59, version="3") if False else
     dict(sns(delivery, 59), SignatureVersion="3"))
raw = {"content-type": "text/plain; charset=UTF-8"}
cases.append({"name": "raw_message_delivery", "expect": "missing_header",
              "url": "https://hooks.example.com/webhooks/ses", "headers": dict(raw, **{"x-amz-sns-rawdelivery": "true"}),
              "body": json.dumps(delivery)})

signing = {"SES_SIGNING_KEY": base64.b64encode(CURRENT.private_bytes(
    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())).decode(),
    "SES_SIGNING_CERT_URL": CERT_URL, "SES_SIGNING_TOPIC_ARN": TOPIC}
out = {"settings": {"SES_TOPIC_ARNS": [TOPIC]}, "signing": signing, "now": NOW, "tolerance_secs": 300,
       "certificates": {CERT_URL: cert(CURRENT), ROTATED_URL: cert(ROTATED),
                        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-x.pem": cert(FOREIGN)},
       "cases": cases}
with open(os.path.join(HERE, "vectors.json"), "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
print("wrote", len(cases), "cases")
