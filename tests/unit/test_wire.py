"""gdaemon.wire, bytes in and bytes out: what the daemon and the client share (no sockets here)."""

import json
import os

import pytest

from gdaemon.errors import ConfigError
from gdaemon.wire import codec
from gdaemon.wire.address import CLIENT_SCHEMES, Scheme, parse_address
from gdaemon.wire.websocket import (CloseCode, FrameError, MessageReader, Opcode, WebSocketMessageTooLarge,
                                    encode_frame, header_size, parse_frame, parse_header, unmask)

# -- codec ----------------------------------------------------------------------------


def test_strict_and_lenient_encoders_differ_only_on_what_json_cannot_represent():
    value = {"big": 2 ** 70, 1: "int key", "text": "é\n"}
    assert codec.dumps(value) == codec.dumps_strict(value)
    assert codec.loads(codec.dumps_strict(value)) == {"big": 2 ** 70, "1": "int key", "text": "é\n"}
    assert json.loads(codec.dumps({"s": {1}})) == {"s": [1]}
    with pytest.raises(TypeError):
        codec.dumps_strict({"s": {1}})
    with pytest.raises(TypeError):
        codec.dumps_strict({"big": 2 ** 70, "s": {1}})   # the stdlib path is strict too


# -- addresses ------------------------------------------------------------------------

def test_websocket_addresses_take_default_ports_and_paths():
    a = parse_address("ws://Example.org/rpc?x=1", "address", CLIENT_SCHEMES)
    assert (a.scheme, a.host, a.port, a.path) == (Scheme.WS, "example.org", 80, "/rpc?x=1")
    b = parse_address("wss://[::1]:8443", "address", CLIENT_SCHEMES)
    assert (b.scheme, b.host, b.port, b.path) == (Scheme.WSS, "::1", 8443, "/rpc")
    assert str(b) == "wss://[::1]:8443/rpc" and b.scheme.is_tls and b.scheme.is_websocket


@pytest.mark.parametrize("text", ["ws://:80/rpc", "ws://host:99999/rpc", "http://host:80"])
def test_malformed_client_addresses_are_config_errors(text):
    with pytest.raises(ConfigError, match="^address: "):
        parse_address(text, "address", CLIENT_SCHEMES)


def test_a_daemon_does_not_serve_on_a_websocket_address():
    with pytest.raises(ConfigError, match="one of unix, tcp, tls"):
        parse_address("ws://127.0.0.1:1/rpc")


def test_schemes_compare_and_print_as_their_names():
    address = parse_address("unix://daemon.sock")
    assert address.scheme == "unix" and address.is_unix and str(address) == "unix://daemon.sock"
    assert "%s" % Scheme.TLS == "tls"


# -- websocket frames -----------------------------------------------------------------

def _naive_mask(mask, data):
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("size", [0, 1, 5, 125, 126, 65535, 65536, 65537, 200003])
def test_masked_frames_round_trip(size):
    payload, mask = os.urandom(size), os.urandom(4)
    frame = encode_frame(Opcode.BINARY, payload, mask_key=mask)
    assert frame.endswith(_naive_mask(mask, payload))
    buffer = bytearray(frame + b"next")
    assert parse_frame(buffer, 1 << 20) == (True, Opcode.BINARY, payload)
    assert buffer == b"next"


def test_unmask_matches_the_definition():
    data, mask = os.urandom(70001), os.urandom(4)
    view = bytearray(data)
    unmask(mask, memoryview(view))
    assert bytes(view) == _naive_mask(mask, data)


def test_a_frame_is_parsed_only_once_complete_and_refused_from_its_header():
    frame = encode_frame(Opcode.TEXT, b"x" * 300)
    buffer = bytearray(frame[:3])
    assert parse_frame(buffer, 1000) is None and len(buffer) == 3
    with pytest.raises(WebSocketMessageTooLarge):
        parse_frame(bytearray(frame[:4]), 299)    # the header alone says it is too big
    b0, b1 = frame[0], frame[1]
    assert header_size(b0, b1) == 2
    assert parse_header(b0, b1, frame[2:4]) == (True, Opcode.TEXT, 300, None)


def test_reserved_bits_are_a_protocol_error():
    with pytest.raises(FrameError) as info:
        header_size(0x80 | 0x40 | Opcode.TEXT, 0)
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_the_server_side_reader_wants_masked_frames():
    with pytest.raises(FrameError, match="masked"):
        MessageReader(100, masked=True).header_size(0x81, 0x05)
    assert MessageReader(100, masked=True).header_size(0x81, 0x85) == 4


def test_fragments_join_and_the_limit_counts_them_all():
    reader = MessageReader(10)
    reader.check(False, Opcode.TEXT, 4)
    assert reader.add(False, Opcode.TEXT, b"abcd") is None
    reader.check(True, Opcode.PING, 3)               # control frames may come in between
    reader.check(False, Opcode.CONTINUATION, 4)
    assert reader.add(False, Opcode.CONTINUATION, b"efgh") is None
    with pytest.raises(WebSocketMessageTooLarge) as info:
        reader.check(True, Opcode.CONTINUATION, 3)
    assert info.value.code == CloseCode.TOO_BIG and info.value.limit == 10
    reader.check(True, Opcode.CONTINUATION, 2)
    assert reader.add(True, Opcode.CONTINUATION, b"ij") == b"abcdefghij"
    assert reader.opcode is None


@pytest.mark.parametrize("fin, opcode, length, reason", [
    (True, Opcode.CONTINUATION, 1, "unexpected continuation"),
    (False, Opcode.PING, 1, "invalid control frame"),
    (True, Opcode.CLOSE, 126, "invalid control frame"),
    (True, 0x3, 1, "unknown opcode 3"),
    (True, 0xB, 1, "unknown opcode 11"),
])
def test_frames_that_may_not_come(fin, opcode, length, reason):
    with pytest.raises(FrameError, match=reason) as info:
        MessageReader(100).check(fin, opcode, length)
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_a_new_message_inside_a_fragmented_one_is_refused():
    reader = MessageReader(100)
    reader.add(False, Opcode.TEXT, b"a")
    with pytest.raises(FrameError, match="unexpected continuation"):
        reader.check(True, Opcode.TEXT, 1)


def test_text_must_be_utf8_unless_the_reader_leaves_it_to_json():
    with pytest.raises(FrameError) as info:
        MessageReader(100).add(True, Opcode.TEXT, b"\xff")
    assert info.value.code == CloseCode.INVALID_DATA
    assert MessageReader(100, check_utf8=False).add(True, Opcode.TEXT, b"\xff") == b"\xff"
    assert MessageReader(100).add(True, Opcode.BINARY, b"\xff") == b"\xff"
