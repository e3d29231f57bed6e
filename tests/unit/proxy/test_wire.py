"""Wire encoding/decoding of the startup-phase packets and backend messages."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantctl.proxy import wire


def startup(**params: str) -> bytes:
    return wire.encode_startup_message(wire.StartupMessage(wire.PROTOCOL_3_0, tuple(params.items())))


def test_startup_message_round_trip_and_database_default() -> None:
    packet = startup(user="alice", database="app", application_name="psql")
    decoded = wire.decode_startup_packet(packet)
    assert isinstance(decoded, wire.StartupMessage)
    assert decoded.user == "alice" and decoded.database == "app"
    assert wire.encode_startup_message(decoded) == packet
    no_database = wire.decode_startup_packet(startup(user="bob"))
    assert isinstance(no_database, wire.StartupMessage) and no_database.database == "bob"


def test_replace_rewrites_only_the_database() -> None:
    message = wire.StartupMessage(wire.PROTOCOL_3_0, (("user", "a"), ("database", "app"), ("x", "y")))
    assert message.replace("database", "a_app").parameters == (("user", "a"), ("database", "a_app"), ("x", "y"))
    assert wire.StartupMessage(3 << 16, (("user", "a"),)).replace("database", "d").get("database") == "d"


def test_special_requests() -> None:
    assert isinstance(wire.decode_startup_packet(wire.encode_ssl_request()), wire.SSLRequest)
    assert isinstance(wire.decode_startup_packet(wire.encode_gssenc_request()), wire.GSSENCRequest)
    cancel = wire.decode_startup_packet(wire.encode_cancel_request(1234, b"\x01\x02\x03\x04"))
    assert cancel == wire.CancelRequest(1234, b"\x01\x02\x03\x04")


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (struct.pack("!ii", 8, 2 << 16), "unsupported frontend protocol"),
        (struct.pack("!ii", 12, 3 << 16) + b"user", "terminator"),
        (struct.pack("!ii", 14, 3 << 16) + b"user\x00\x00", "no value"),
        (struct.pack("!ii", 13, 3 << 16) + b"\xff\xfe\x00\x00\x00", "UTF-8"),
    ],
)
def test_malformed_startup_packets_raise_protocol_violation(packet: bytes, message: str) -> None:
    with pytest.raises(wire.ProtocolViolation, match=message):
        wire.decode_startup_packet(packet)


def test_length_limits() -> None:
    assert wire.startup_packet_length(b"\x00\x00") is None
    with pytest.raises(wire.ProtocolViolation):
        wire.startup_packet_length(struct.pack("!i", 4))
    with pytest.raises(wire.ProtocolViolation):
        wire.startup_packet_length(struct.pack("!i", 10_001))
    assert wire.startup_packet_length(struct.pack("!i", 10_000)) == 10_000


def test_error_response_fields() -> None:
    error = wire.encode_error("28000", "nope", detail="why")
    assert error[:1] == b"E"
    (length,) = struct.unpack("!i", error[1:5])
    assert length == len(error) - 1
    fields = wire.decode_error_fields(error[5:])
    assert fields == {"S": "FATAL", "V": "FATAL", "C": "28000", "M": "nope", "D": "why"}


def test_backend_key_data_round_trip() -> None:
    message = wire.encode_backend_key_data(42, b"abcd")
    assert wire.decode_backend_key_data(message[5:]) == (42, b"abcd")


def test_message_splitter_handles_arbitrary_fragmentation() -> None:
    stream = b"R" + struct.pack("!ii", 8, 0) + wire.encode_backend_key_data(7, b"wxyz") + b"Z\x00\x00\x00\x05I"
    for cut in range(len(stream) + 1):
        splitter = wire.MessageSplitter()
        messages = splitter.feed(stream[:cut]) + splitter.feed(stream[cut:])
        assert [kind for kind, _ in messages] == [b"R", b"K", b"Z"]
        assert b"".join(m for _, m in messages) == stream


@given(st.binary(max_size=300))
def test_decoding_random_bytes_raises_only_protocol_violation(data: bytes) -> None:
    packet = struct.pack("!i", len(data) + 4) + data
    try:
        wire.startup_packet_length(packet)
        wire.decode_startup_packet(packet)
    except wire.ProtocolViolation:
        pass
    except struct.error:
        assert len(data) < 4  # too short to hold a code: the session never decodes those (length < 8)


def test_client_values_are_escaped_for_logs() -> None:
    from tenantctl.proxy.logsafe import printable

    forged = 'client03\n2026-12-03 INFO tenantctl.proxy: refused admin from 10.0.0.1: ok\x1b[2J'
    line = printable(forged)
    assert "\n" not in line and "\x1b" not in line
    assert line.startswith("client03\\n2026") and "\\x1b[2J" in line
    assert printable("back\\slash") == "back\\\\slash"  # an escaped-looking value stays unambiguous
    assert printable("x" * 500).endswith("...") and len(printable("x" * 500)) == 131
    assert printable(None) == "-" and printable("plain") == "plain"
