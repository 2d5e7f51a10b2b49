"""MLLP de-framing: 0x0B message 0x1C 0x0D, whatever the chunking, garbage and restarts."""

from __future__ import annotations

import pytest

from ketacare.interop.hl7v2.mllp import FrameReader, FrameTooLarge, frame

A = b"MSH|^~\\&|A\rPID|||1"
B = b"MSH|^~\\&|B\rPID|||2"


def test_one_frame() -> None:
    assert FrameReader().feed(frame(A)) == [A]


def test_byte_by_byte_gives_the_same_frames() -> None:
    reader = FrameReader()
    got: list[bytes] = []
    for byte in frame(A) + frame(B):
        got += reader.feed(bytes([byte]))
    assert got == [A, B]
    assert reader.discarded == 2  # the two CRs after the end blocks


def test_two_frames_in_one_chunk_and_a_third_split() -> None:
    reader = FrameReader()
    data = frame(A) + frame(B) + frame(A)
    assert reader.feed(data[:-5]) == [A, B]
    assert reader.feed(data[-5:]) == [A]


def test_garbage_outside_frames_is_discarded() -> None:
    reader = FrameReader()
    assert reader.feed(b"hello\r\n" + frame(A) + b"\x00\xff junk" + frame(B) + b"tail") == [A, B]
    assert reader.discarded == len(b"hello\r\n") + 1 + len(b"\x00\xff junk") + 1 + len(b"tail")


def test_a_start_block_inside_a_frame_abandons_the_partial_frame() -> None:
    reader = FrameReader()
    assert reader.feed(b"\x0bMSH|^~\\&|half a mess" + frame(B)) == [B]
    assert reader.abandoned == 1


def test_an_end_block_without_carriage_return_ends_the_frame() -> None:
    assert FrameReader().feed(b"\x0b" + A + b"\x1c" + frame(B)) == [A, B]


def test_an_empty_frame_is_a_frame() -> None:
    assert FrameReader().feed(b"\x0b\x1c\x0d") == [b""]


def test_a_frame_over_the_limit_is_refused_with_or_without_its_end() -> None:
    with pytest.raises(FrameTooLarge):
        FrameReader(max_frame_bytes=100).feed(b"\x0b" + b"x" * 101)
    with pytest.raises(FrameTooLarge):
        FrameReader(max_frame_bytes=100).feed(frame(b"x" * 101))
    reader = FrameReader(max_frame_bytes=100)
    for _ in range(10):
        reader.feed(b"\x0b" + b"x" * 9 if _ == 0 else b"x" * 10)
    with pytest.raises(FrameTooLarge):
        reader.feed(b"xx")
    assert FrameReader(max_frame_bytes=100).feed(frame(b"x" * 100)) == [b"x" * 100]


def test_garbage_alone_is_bounded_memory() -> None:
    reader = FrameReader(max_frame_bytes=100)
    for _ in range(100):
        assert reader.feed(b"no start block here" * 100) == []
    assert reader.discarded == 100 * 19 * 100
