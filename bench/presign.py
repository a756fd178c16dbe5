#!/usr/bin/env python3
"""Writes N distinct Resend webhooks, correctly signed (Svix scheme) with SECRET at the current
time, one per line: svix-id, svix-timestamp, svix-signature, body (tab-separated), for replay.lua.
Independent of hookline's own signer (plain hmac/hashlib)."""
import base64, hashlib, hmac, sys, time

secret, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
key = base64.b64decode(secret.split("_", 1)[1])
ts = str(int(time.time()))
with open(out, "w") as f:
    for i in range(n):
        mid = f"msg_bench_{i}"
        body = ('{"type":"email.delivered","created_at":"2026-11-23T10:00:00.000Z","data":{"created_at":"2026-11-23T10:00:00.000Z",'
                f'"email_id":"bench-{i}","from":"Acme <onboarding@resend.dev>","to":["someone@example.com"],"subject":"Hello"}}}}')
        sig = base64.b64encode(hmac.new(key, f"{mid}.{ts}.{body}".encode(), hashlib.sha256).digest()).decode()
        f.write(f"{mid}\t{ts}\tv1,{sig}\t{body}\n")
