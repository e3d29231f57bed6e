"""A mock SCRAM-SHA-256 exchange for clients the proxy will refuse before reaching a backend.

PostgreSQL runs a mock authentication for a role that does not exist, so an unknown user and a wrong
password look the same from outside. The proxy does likewise for an unknown tenant, a database the
tenant does not have, and an address outside the tenant's ranges: it offers SCRAM-SHA-256, answers
the client's first message with a salt derived from the user name (stable, so repeated tries see the
same one) and the iteration count the backends use, and ends with the message a backend sends for a
wrong password, with the same fields. The challenge is sent after the time a real backend takes to
send its own (an average of recent handshakes), so timing does not tell them apart either.

Pure message building and parsing; ``MockAuth`` holds what the proxy learned (shared by sessions).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct

from tenantctl.proxy import wire

SCRAM = "SCRAM-SHA-256"
AUTH_SASL_CONTINUE = 11
DEFAULT_ITERATIONS = 4096
_NONCE = re.compile(rb"(?:^|,)r=([\x21-\x2b\x2d-\x7e]+)")
_ITERATIONS = re.compile(rb"(?:^|,)i=([0-9]+)")
# What PostgreSQL 15 sends for a failed password, beyond severity, code and message; replaced by the
# fields a real backend sent through this proxy, as soon as one did.
_DEFAULT_FIELDS = {"F": "auth.c", "L": "326", "R": "auth_failed"}


class MockAuth:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or os.urandom(32)
        self.iterations = DEFAULT_ITERATIONS
        self.latency = 0.0  # seconds from backend connect to its first authentication request (average)
        self.step = 0.0  # seconds from a client's authentication message to the backend's answer (average)
        self._fields = dict(_DEFAULT_FIELDS)
        self._samples = 0
        self._step_samples = 0

    # --- what the proxy learns from real backends -------------------------------------------------

    def observe_latency(self, seconds: float) -> None:
        self._samples += 1
        weight = 1.0 / min(self._samples, 20)  # a running mean, then an average over ~20 handshakes
        self.latency += (seconds - self.latency) * weight

    def observe_step(self, seconds: float) -> None:
        self._step_samples += 1
        self.step += (seconds - self.step) / min(self._step_samples, 20)

    def observe_backend_message(self, kind: bytes, message: bytes) -> None:
        """Learn the iteration count and the failure's fields from what a backend sends while authenticating."""
        if kind == b"R" and len(message) >= 9 and struct.unpack_from("!i", message, 5)[0] == AUTH_SASL_CONTINUE:
            found = _ITERATIONS.search(message[9:])
            if found:
                self.iterations = int(found.group(1))
        elif kind == b"E":
            fields = wire.decode_error_fields(message[5:])
            if fields.get("C") == "28P01":
                self._fields = {k: v for k, v in fields.items() if k in ("F", "L", "R")}

    # --- the exchange ------------------------------------------------------------------------------

    def sasl_request(self) -> bytes:
        body = struct.pack("!i", wire.AUTH_SASL) + SCRAM.encode() + b"\x00\x00"
        return b"R" + struct.pack("!i", 4 + len(body)) + body

    def server_first(self, user: str, client_first: bytes) -> bytes | None:
        """AuthenticationSASLContinue for ``client_first``; None when it is not a SCRAM client-first message."""
        gs2, _, bare = client_first.partition(b",")  # "n,,n=...,r=..." (flag, authzid, then the bare message)
        _authzid, _, bare = bare.partition(b",")
        if gs2[:1] not in (b"n", b"y") and not gs2.startswith(b"p="):
            return None
        nonce = _NONCE.search(bare)
        if nonce is None:
            return None
        salt = hmac.new(self._secret, b"salt:" + user.encode("utf-8", "replace"), hashlib.sha256).digest()[:16]
        server_nonce = base64.b64encode(os.urandom(18))
        text = (b"r=" + nonce.group(1) + server_nonce + b",s=" + base64.b64encode(salt)
                + b",i=" + str(self.iterations).encode())
        body = struct.pack("!i", AUTH_SASL_CONTINUE) + text
        return b"R" + struct.pack("!i", 4 + len(body)) + body

    def failure(self, user: str) -> bytes:
        fields = [b"SFATAL", b"VFATAL", b"C28P01",
                  b"M" + f'password authentication failed for user "{user}"'.encode("utf-8", "replace")]
        fields += [key.encode() + value.encode("utf-8", "replace") for key, value in sorted(self._fields.items())]
        body = b"".join(field + b"\x00" for field in fields) + b"\x00"
        return b"E" + struct.pack("!i", 4 + len(body)) + body


def parse_sasl_initial(payload: bytes) -> tuple[str, bytes] | None:
    """(mechanism, client-first message) of a SASLInitialResponse body; None when malformed."""
    name, sep, rest = payload.partition(b"\x00")
    if not sep or len(rest) < 4:
        return None
    (length,) = struct.unpack_from("!i", rest, 0)
    data = rest[4:]
    if length != len(data):
        return None
    return name.decode("utf-8", "replace"), data
