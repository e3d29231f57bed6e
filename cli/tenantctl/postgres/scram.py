"""SCRAM-SHA-256 password verifiers computed in Python (RFC 5802/7677, PostgreSQL's storage format).

``ALTER ROLE r PASSWORD 'SCRAM-SHA-256$4096:...'`` stores a verifier as is, so the plaintext password
never reaches the server, its log or ``pg_stat_statements``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata

SCRAM_ITERATIONS = 4096  # PostgreSQL's default scram_iterations
SALT_BYTES = 16
PREFIX = "SCRAM-SHA-256$"


def _normalize(password: str) -> bytes:
    # PostgreSQL applies SASLprep (NFKC plus prohibited-character checks) and falls back to the raw bytes
    # when the password is not valid for it. tenantctl's generated passwords are ASCII, where both agree.
    return unicodedata.normalize("NFKC", password).encode("utf-8")


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", _normalize(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64), as in ``pg_authid``."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    stored_key, server_key = _keys(password, salt, iterations)
    return f"{PREFIX}{iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def verifier_matches(verifier: str, password: str) -> bool:
    """True when ``verifier`` was computed from ``password``."""
    try:
        head, keys = verifier.removeprefix(PREFIX).split("$", 1)
        iterations_text, salt_text = head.split(":", 1)
        stored_text, server_text = keys.split(":", 1)
        salt = base64.b64decode(salt_text, validate=True)
        iterations = int(iterations_text)
    except ValueError:
        return False
    if not verifier.startswith(PREFIX):
        return False
    stored_key, server_key = _keys(password, salt, iterations)
    return hmac.compare_digest(base64.b64encode(stored_key).decode(), stored_text) and hmac.compare_digest(
        base64.b64encode(server_key).decode(), server_text)
