"""The parts of the PostgreSQL frontend/backend protocol the proxy needs (pure: bytes in, values out).

Untyped startup-phase packets (``int32 length, int32 code, payload``) are decoded here; typed
backend messages (``byte1 type, int32 length, payload``) are split so the proxy can swap the
backend's BackendKeyData for its own. After authentication the proxy relays bytes unparsed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PROTOCOL_3_0 = 3 << 16  # 196608
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
MAX_STARTUP_PACKET = 10_000  # the server's MAX_STARTUP_PACKET_LENGTH
SSL_ACCEPT = b"S"
SSL_REFUSE = b"N"
GSSENC_REFUSE = b"N"

_INT32 = struct.Struct("!i")
_TWO_INT32 = struct.Struct("!ii")
_CANCEL = struct.Struct("!iiii")  # length, code, pid, secret (protocol 3.0: 4-byte secret)
_MESSAGE_HEADER = struct.Struct("!ci")


class ProtocolViolation(Exception):
    """The peer sent bytes that are not valid protocol; carries the SQLSTATE to report."""

    def __init__(self, message: str, sqlstate: str = "08P01") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DuplicateParameter(ProtocolViolation):
    """A startup parameter appears twice: the proxy and the server could each read a different one."""


@dataclass(frozen=True)
class SSLRequest:
    pass


@dataclass(frozen=True)
class GSSENCRequest:
    pass


@dataclass(frozen=True)
class CancelRequest:
    pid: int
    secret: bytes


@dataclass(frozen=True)
class StartupMessage:
    protocol: int
    parameters: tuple[tuple[str, str], ...]  # in the client's order

    def get(self, name: str) -> str | None:
        for key, value in self.parameters:
            if key == name:
                return value
        return None

    @property
    def user(self) -> str | None:
        return self.get("user")

    @property
    def database(self) -> str | None:
        """The requested database; like the server, it defaults to the user name."""
        database = self.get("database")
        return database if database else self.user

    def replace(self, name: str, value: str) -> StartupMessage:
        updated = tuple((k, value if k == name else v) for k, v in self.parameters)
        if name not in {k for k, _ in self.parameters}:
            updated += ((name, value),)
        return StartupMessage(self.protocol, updated)


StartupPacket = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage


def startup_packet_length(buffer: bytes | bytearray, max_length: int = MAX_STARTUP_PACKET) -> int | None:
    """Length of the startup packet at the start of ``buffer``; None until 4 bytes are there."""
    if len(buffer) < 4:
        return None
    length: int = _INT32.unpack_from(buffer, 0)[0]
    if length < 8 or length > max_length:
        raise ProtocolViolation(f"invalid length of startup packet ({length})")
    return length


def decode_startup_packet(packet: bytes) -> StartupPacket:
    """Decode one complete startup-phase packet (its length prefix included)."""
    length, code = _TWO_INT32.unpack_from(packet, 0)
    if length != len(packet):
        raise ProtocolViolation("startup packet length does not match its content")
    if code == SSL_REQUEST_CODE and length == 8:
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE and length == 8:
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        if length < 16 or length > 16 + 256:
            raise ProtocolViolation("invalid length of cancel request")
        (pid,) = _INT32.unpack_from(packet, 8)
        return CancelRequest(pid, bytes(packet[12:]))
    if code >> 16 != 3:
        raise ProtocolViolation(
            f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: server supports 3.0 to 3.0",
            sqlstate="0A000",
        )
    return StartupMessage(code, _decode_parameters(packet[8:]))


def _decode_parameters(payload: bytes) -> tuple[tuple[str, str], ...]:
    if not payload.endswith(b"\x00"):
        raise ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
    body = payload[:-1]  # "name\0value\0" pairs, then the final terminator we just dropped
    if body and not body.endswith(b"\x00"):
        raise ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
    fields = body[:-1].split(b"\x00") if body else []
    if len(fields) % 2:
        raise ProtocolViolation("invalid startup packet layout: a parameter has no value")
    try:
        strings = [field.decode("utf-8") for field in fields]
    except UnicodeDecodeError:
        raise ProtocolViolation("invalid startup packet: parameters are not valid UTF-8") from None
    parameters = tuple(zip(strings[0::2], strings[1::2], strict=True))
    seen: set[str] = set()
    for name, _ in parameters:
        if not name:
            raise ProtocolViolation("invalid startup packet layout: empty parameter name")
        if name in seen:
            # PostgreSQL keeps the last value of a repeated key while a first-match reader admits the
            # first: with two `user` keys the proxy would admit one role and the server log in another.
            raise DuplicateParameter(f'invalid startup packet: parameter "{name}" given more than once')
        seen.add(name)
    return parameters


def encode_startup_message(message: StartupMessage) -> bytes:
    body = b"".join(k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in message.parameters) + b"\x00"
    return _TWO_INT32.pack(8 + len(body), message.protocol) + body


def encode_ssl_request() -> bytes:
    return _TWO_INT32.pack(8, SSL_REQUEST_CODE)


def encode_gssenc_request() -> bytes:
    return _TWO_INT32.pack(8, GSSENC_REQUEST_CODE)


def encode_cancel_request(pid: int, secret: bytes) -> bytes:
    return _TWO_INT32.pack(12 + len(secret), CANCEL_REQUEST_CODE) + _INT32.pack(pid) + secret


def encode_backend_key_data(pid: int, secret: bytes) -> bytes:
    return b"K" + _INT32.pack(8 + len(secret)) + _INT32.pack(pid) + secret


def decode_backend_key_data(payload: bytes) -> tuple[int, bytes]:
    if len(payload) < 8:
        raise ProtocolViolation("BackendKeyData too short")
    (pid,) = _INT32.unpack_from(payload, 0)
    return pid, bytes(payload[4:])


def encode_error(sqlstate: str, message: str, *, severity: str = "FATAL", detail: str | None = None) -> bytes:
    """An ErrorResponse ('E') message."""
    fields = [b"S" + severity.encode(), b"V" + severity.encode(), b"C" + sqlstate.encode(),
              b"M" + message.encode("utf-8")]
    if detail:
        fields.append(b"D" + detail.encode("utf-8"))
    body = b"".join(field + b"\x00" for field in fields) + b"\x00"
    return b"E" + _INT32.pack(4 + len(body)) + body


def decode_error_fields(payload: bytes) -> dict[str, str]:
    """Fields of an ErrorResponse/NoticeResponse payload, keyed by their one-letter code."""
    fields: dict[str, str] = {}
    for part in payload.split(b"\x00"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


AUTH_SASL = 10
SCRAM_PLUS = "SCRAM-SHA-256-PLUS"


def without_channel_binding(message: bytes) -> bytes:
    """Drop SCRAM-SHA-256-PLUS from an AuthenticationSASL message; other messages are returned as is.

    Channel binding ties SCRAM to the TLS certificate of the connection the client sees: through a
    TLS-terminating proxy that is the proxy's, not the cluster's, so a binding can never verify.
    """
    if message[:1] != b"R" or len(message) < 9 or _INT32.unpack_from(message, 5)[0] != AUTH_SASL:
        return message
    mechanisms = [m for m in bytes(message[9:]).split(b"\x00") if m]
    kept = [m for m in mechanisms if m.decode("utf-8", "replace") != SCRAM_PLUS]
    if len(kept) == len(mechanisms):
        return message
    body = _INT32.pack(AUTH_SASL) + b"".join(m + b"\x00" for m in kept) + b"\x00"
    return b"R" + _INT32.pack(4 + len(body)) + body


class MessageSplitter:
    """Splits a stream of typed messages (used only before ReadyForQuery)."""

    def __init__(self, max_length: int = 1 << 30) -> None:
        self._buffer = bytearray()
        self._max_length = max_length

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Append ``data``; return the complete messages as ``(type, whole message bytes)``."""
        self._buffer += data
        messages: list[tuple[bytes, bytes]] = []
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= 5:
            kind, length = _MESSAGE_HEADER.unpack_from(buffer, offset)
            if length < 4 or length > self._max_length:
                raise ProtocolViolation(f"invalid message length {length}")
            end = offset + 1 + length
            if end > len(buffer):
                break
            messages.append((kind, bytes(buffer[offset:end])))
            offset = end
        del buffer[:offset]
        return messages

    def take_rest(self) -> bytes:
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest
