"""Length-prefixed frames of the node read path (sans I/O): FrameBuffer and frame()."""

import struct

import pytest

from alpcrun.errors import ResourceExhausted
from alpcrun.proto.frames import HEADER_BYTES, FrameBuffer, frame


def test_frame_prefixes_the_big_endian_length():
    assert HEADER_BYTES == 4
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(b"x" * 0x010203)[:4] == b"\x00\x01\x02\x03"
    assert frame(b"") == b"\x00\x00\x00\x00"


def test_a_frame_fed_byte_by_byte_comes_out_whole_once():
    buf = FrameBuffer(max_frame=1024)
    data = frame(b"hello, node") + frame(b"second")
    out = []
    for i in range(len(data)):
        buf.feed(data[i : i + 1])
        while (got := buf.frame()) is not None:
            out.append((i, got))
    # Each frame appears exactly when its last byte arrived, never earlier.
    first_end = HEADER_BYTES + len(b"hello, node") - 1
    assert out == [(first_end, b"hello, node"), (len(data) - 1, b"second")]
    assert len(buf) == 0


def test_an_incomplete_length_prefix_is_not_a_frame():
    buf = FrameBuffer(max_frame=16)
    buf.feed(b"\x00\x00\x00")
    assert buf.frame() is None
    assert len(buf) == 3  # nothing consumed
    buf.feed(b"\x02ab")
    assert buf.frame() == b"ab"


def test_several_frames_in_one_feed_come_out_in_order():
    buf = FrameBuffer(max_frame=64)
    messages = [b"one", b"", b"three", b"x" * 64]
    buf.feed(b"".join(frame(m) for m in messages) + b"\x00\x00")  # and a partial prefix
    assert [buf.frame() for _ in messages] == messages
    assert buf.frame() is None
    assert len(buf) == 2


def test_raw_runs_follow_a_frame_and_frames_resume_after_them():
    buf = FrameBuffer(max_frame=16)
    value = bytes(range(256)) * 40  # a raw run far longer than max_frame is fine
    stream = frame(b"hdr") + value + frame(b"next") + b"tail"
    buf.feed(stream[:10])
    assert buf.frame() == b"hdr"
    assert buf.raw(len(value)) is None  # only 3 of its bytes so far, none consumed
    assert len(buf) == 3
    buf.feed(stream[10:5000])
    assert buf.raw(len(value)) is None
    buf.feed(stream[5000:])
    assert buf.raw(len(value)) == value
    assert buf.frame() == b"next"
    assert buf.raw(4) == b"tail"
    assert buf.raw(1) is None
    assert len(buf) == 0


def test_raw_zero_is_empty_and_consumes_nothing():
    buf = FrameBuffer(max_frame=16)
    assert buf.raw(0) == b""
    buf.feed(frame(b"ab"))
    assert buf.raw(0) == b""
    assert buf.frame() == b"ab"


def test_an_empty_frame_is_a_frame():
    buf = FrameBuffer(max_frame=0)
    buf.feed(frame(b"") + frame(b""))
    assert buf.frame() == b""
    assert buf.frame() == b""
    assert buf.frame() is None


def test_a_frame_of_exactly_the_limit_is_accepted():
    buf = FrameBuffer(max_frame=100)
    buf.feed(frame(b"z" * 100))
    assert buf.frame() == b"z" * 100


def test_an_over_long_prefix_raises_naming_both_sizes_before_the_body_arrives():
    buf = FrameBuffer(max_frame=100)
    buf.feed(struct.pack(">I", 101))  # only the prefix: refused without waiting for 101 bytes
    with pytest.raises(ResourceExhausted) as exc:
        buf.frame()
    assert "101" in str(exc.value)
    assert "100" in str(exc.value)


def test_a_huge_prefix_raises_instead_of_waiting_for_gigabytes():
    buf = FrameBuffer(max_frame=64 * 1024)
    buf.feed(b"\xff\xff\xff\xff" + b"junk")
    with pytest.raises(ResourceExhausted, match=str(0xFFFFFFFF)):
        buf.frame()


def test_discard_drops_what_is_buffered_up_to_the_size():
    buf = FrameBuffer(max_frame=16)
    buf.feed(b"abc")
    assert buf.discard(5) == 3  # only 3 buffered
    buf.feed(b"de" + frame(b"x"))
    assert buf.discard(2) == 2
    assert buf.frame() == b"x"
    assert len(buf) == 0
