"""Writes edge_cases.json: Ed25519 signatures at the edges of what verifiers disagree on, with
the verdict of libsodium (PyNaCl, what telnyx-python verifies with) for each.

    python3 -m venv /tmp/nacl && /tmp/nacl/bin/pip install pynacl
    /tmp/nacl/bin/python testdata/ed25519/make_edge_cases.py

The curve arithmetic below is plain Edwards-curve math, written for this file, used only to
craft the cases; the verdicts come from libsodium.
"""
import base64
import hashlib
import json
import os

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def inv(x):
    return pow(x, P - 2, P)


def add(a, b):
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * inv(1 + t) % P, (y1 * y2 + x1 * x2) * inv(1 - t) % P)


def mul(n, pt):
    out = (0, 1)
    while n:
        if n & 1:
            out = add(out, pt)
        pt = add(pt, pt)
        n >>= 1
    return out


def x_from_y(y, sign):
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = pow(u * inv(v), (P + 3) // 8, P)
    if (v * x * x - u) % P != 0:
        x = x * SQRT_M1 % P
    if (v * x * x - u) % P != 0:
        return None
    if x % 2 != sign:
        x = (P - x) % P
    return x


def encode(pt):
    x, y = pt
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def decode(b):
    n = int.from_bytes(b, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    return (x_from_y(y, sign), y)


B = (x_from_y(4 * inv(5) % P, 0), 4 * inv(5) % P)


def h(*parts):
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % L


def secret_scalar(seed):
    d = bytearray(hashlib.sha512(seed).digest()[:32])
    d[0] &= 248
    d[31] &= 127
    d[31] |= 64
    return int.from_bytes(d, "little")


def order8_point():
    """A point of order 8: a torsion component no prime-order point has."""
    for y in range(2, 1000):
        x = x_from_y(y, 0)
        if x is None:
            continue
        t = mul(L, (x, y))
        if mul(4, t) != (0, 1):
            return t
    raise SystemExit("no order-8 point found")


def libsodium(pk, msg, sig):
    try:
        VerifyKey(pk).verify(msg, sig)
        return "ok"
    except (BadSignatureError, ValueError, Exception):
        return "rejected"


seed = bytes(range(11, 43))
sk = SigningKey(seed)
pk = bytes(sk.verify_key)
a = secret_scalar(seed)
A = decode(pk)
assert encode(mul(a, B)) == pk
msg = b'1795168800|{"data":{"event_type":"message.finalized"}}'

cases = []


def case(name, why, sig, key=pk, message=msg):
    cases.append(
        {
            "name": name,
            "why": why,
            "public_key": base64.b64encode(key).decode(),
            "message": message.decode(),
            "signature": base64.b64encode(sig).decode(),
            "libsodium": libsodium(key, message, sig),
        }
    )


genuine = sk.sign(msg).signature
case("genuine", "a signature made by the library", genuine)

r_bytes, s = genuine[:32], int.from_bytes(genuine[32:], "little")
case("s_plus_l", "the same signature with s + l: not canonical", r_bytes + (s + L).to_bytes(32, "little"))

identity = encode((0, 1))
k = h(identity, pk, msg)
case(
    "identity_r",
    "R is the identity and s = k*a: made with the private key; cofactorless equation holds, "
    "but R has small order (libsodium rejects, ed25519-dalek's plain verify accepts)",
    identity + (k * a % L).to_bytes(32, "little"),
)

T = order8_point()
r = h(b"nonce", msg)
R_mixed = encode(add(mul(r, B), T))
k = h(R_mixed, pk, msg)
case(
    "mixed_order_r",
    "R = [r]B + T with T of order 8, s = r + k*a: made with the private key; holds only "
    "cofactored (what batch verification checks), not cofactorless",
    R_mixed + ((r + k * a) % L).to_bytes(32, "little"),
)

case(
    "small_order_r_zero_s",
    "R of order 8 and s = 0",
    encode(T) + bytes(32),
)

flipped = bytearray(genuine)
flipped[5] ^= 1
case("flipped_r", "one bit of R flipped", bytes(flipped))

case(
    "other_message",
    "the genuine signature on a different message",
    genuine,
    message=msg + b" ",
)

keys = [
    ("small_order_key", "the public key is the identity (small order)", identity),
    ("order8_key", "the public key has order 8", encode(T)),
    (
        "non_canonical_key",
        "the public key's y is encoded as y + p (not canonical)",
        ((decode(identity)[1] + P) | 0).to_bytes(32, "little"),
    ),
]
for name, why, key in keys:
    case(name, why + "; any signature", identity + bytes(32), key=key)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "edge_cases.json")
with open(out, "w") as f:
    json.dump({"generator": "testdata/ed25519/make_edge_cases.py", "cases": cases}, f, indent=2)
    f.write("\n")
print(out, [(c["name"], c["libsodium"]) for c in cases])
