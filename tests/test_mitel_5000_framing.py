"""Mitel 5000 length-prefixed framing when the stream is corrupt (issue 11, finding 8).

Before the fix, one record, then ``f0 ff ff 7f``, then 1,000 good records gave 2 frames: the framer trusted the
corrupt length and threw away the next 2 GiB of the stream, 86,004 bytes of calls here, without a trace. Now a
length no record has is stepped over to the next plausible record, and the bytes stepped over reach the journal
as an ``error`` line (`Skipped`), so nothing disappears unrecorded.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smdrd.core import ERROR, process_frame
from smdrd.framing import Frame, Skipped
from smdrd.parsing import ParserContext, get_parser_class
from smdrd.sources.hs_mitel_5000 import MAX_RECORD, MIN_RECORD, LengthPrefixedFramer

pytestmark = pytest.mark.timeout(120)

RECORD = b"TLC 11202 94003 961-9000                     08:36 00:00:03 $00.00              "
CORRUPT = b"\xf0\xff\xff\x7f"


def framed(payload: bytes) -> bytes:
    return struct.pack("<I", len(payload)) + payload


def record(i: int) -> bytes:
    """A distinct good 80-character record."""
    return RECORD.replace(b"961-9000", b"%08d" % i)


def frame_all(data: bytes, chunks: list[int] | None = None, max_line: int = 8192) -> list[Frame]:
    """Feed ``data`` whole (or cut at ``chunks`` sizes, repeated) and close."""
    framer = LengthPrefixedFramer(max_line)
    out: list[Frame] = []
    if not chunks:
        out += framer.feed(data)
    else:
        pos, i = 0, 0
        while pos < len(data):
            size = chunks[i % len(chunks)]
            out += framer.feed(data[pos:pos + size])
            pos += size
            i += 1
    return out + framer.close()


def account(data: bytes, frames: list[Frame]) -> list[int]:
    """Walk ``data`` along ``frames``: each `Skipped` frame must be the next bytes exactly, each record the next
    length prefix and the payload it announces (less its line end). Fails unless the frames account for every
    byte of ``data`` in order; returns the offsets where records were cut."""
    pos = 0
    starts: list[int] = []
    for frame in frames:
        if isinstance(frame, Skipped):
            assert frame.raw, "an empty Skipped frame"
            assert data[pos:pos + len(frame.raw)] == frame.raw, f"skipped bytes at {pos} are not the input's"
            pos += len(frame.raw)
        else:
            assert isinstance(frame, bytes)
            (count,) = struct.unpack_from("<I", data, pos)
            payload = data[pos + 4:pos + 4 + count]
            assert len(payload) == count and payload.rstrip(b"\r\n\x00") == frame, f"record at {pos}"
            starts.append(pos)
            pos += 4 + count
    assert pos == len(data), f"{len(data) - pos} bytes at the end are in no frame"
    return starts


def test_the_finding_a_corrupt_length_then_a_thousand_records() -> None:
    """The reported stream: every one of the 1,001 records comes out, the 4 corrupt bytes as one Skipped frame
    that says how many bytes and why, and nothing else."""
    good = [record(i) for i in range(1001)]
    data = framed(good[0] + b"\r\n") + CORRUPT + b"".join(framed(r + b"\r\n") for r in good[1:])
    frames = frame_all(data)
    assert frames[0] == good[0] and frames[2:] == good[1:]
    skipped = frames[1]
    assert isinstance(skipped, Skipped) and skipped.raw == CORRUPT
    assert skipped.reason.startswith("skipped 4 bytes") and "2147483632" in skipped.reason
    account(data, frames)
    assert frame_all(data, [1]) == frames, "drip-fed one byte at a time: the same frames"


def test_skipped_bytes_are_journalled_as_an_error_line_with_their_raw_bytes() -> None:
    """`process_frame` makes a Skipped frame an ``error`` line holding the bytes exactly and the reason."""
    parser = get_parser_class("mitel-5000")(ParserContext())
    entry = process_frame(Skipped(CORRUPT, "skipped 4 bytes: why"), parser, "ascii", source="pbx", peer="p",
                          received_at=1)
    assert (entry.raw, entry.status, entry.error, entry.calls) == (CORRUPT, ERROR, "skipped 4 bytes: why", ())


def test_garbage_is_given_out_in_bounded_pieces_and_memory_stays_bounded() -> None:
    """A flood of noise with no record in it: the framer never holds more than max_line plus one record, and
    every byte comes out in Skipped frames of at most max_line bytes."""
    noise = bytes(range(256)) * 4096  # 1 MiB, with every byte value
    framer = LengthPrefixedFramer(1024)
    out: list[Frame] = []
    for i in range(0, len(noise), 4093):
        out += framer.feed(noise[i:i + 4093])
        assert framer.pending <= 1024 + 4 + MAX_RECORD
    out += framer.feed(framed(RECORD + b"\r\n"))
    assert out[-1] == RECORD
    out += framer.close()
    assert all(isinstance(f, Skipped) and len(f.raw) <= 1024 for f in out[:-1])
    account(noise + framed(RECORD + b"\r\n"), out)


def test_a_record_followed_by_garbage_is_taken_at_once() -> None:
    """No waiting for what follows: a good record is given out as soon as it is complete, even when garbage
    (or nothing, the PBX being idle) comes after it."""
    framer = LengthPrefixedFramer()
    assert framer.feed(framed(RECORD + b"\r\n") + CORRUPT[:2]) == [RECORD]
    skipped, second = framer.feed(CORRUPT[2:] + framed(record(1) + b"\r\n"))
    assert isinstance(skipped, Skipped) and skipped.raw == CORRUPT and second == record(1)


@pytest.mark.parametrize("bait", [
    framed(b"x" * 20 + b"\r\n")[:-3],            # a plausible record whose end would fall inside the next prefix
    struct.pack("<I", 30) + b"y" * 10,             # a plausible prefix whose payload would swallow the next record
    struct.pack("<I", 20) + b"z" * 18 + b"\r",     # ends in CR, hoping the next prefix's first byte is LF
    b"\x52\x00\x00",                               # most of a real prefix
    b"\r\n\x00\x00\x00",
])
def test_bait_before_a_record_does_not_cost_it(bait: bytes) -> None:
    data = bait + framed(RECORD + b"\r\n") + framed(record(2) + b"\r\n")
    frames = frame_all(data)
    assert frames[-2:] == [RECORD, record(2)]
    account(data, frames)


def test_the_largest_and_smallest_plausible_records() -> None:
    longest = b"L" * (MAX_RECORD - 2) + b"\r\n"
    shortest = b"S" * (MIN_RECORD - 2) + b"\r\n"
    too_long = b"T" * (MAX_RECORD - 1) + b"\r\n"
    data = framed(longest) + framed(shortest) + framed(too_long) + framed(RECORD + b"\r\n")
    frames = frame_all(data)
    assert frames[:2] == [longest[:-2], shortest[:-2]] and frames[-1] == RECORD
    assert all(isinstance(f, Skipped) for f in frames[2:-1])
    account(data, frames)


def test_pathological_prefixes_everywhere_stay_linear() -> None:
    """Input where almost every position starts a plausible prefix: one pass, no blow-up (the test's own
    timeout is the bound), and every byte is accounted for."""
    for unit in (b"\x10\x00\x00\x00", b"\xff\x00\x00\x00" + b"a" * 200, b"\x20\x00\x00\x00" + b"a" * 28 + b"\r"):
        data = unit * (400_000 // len(unit))
        account(data, frame_all(data, [65536]))


# --- the property: garbage anywhere never costs a good record and never loses a byte ---------------------------

_TEXT = st.binary(min_size=1, max_size=MAX_RECORD - 4).map(
    lambda b: bytes(c for c in b if c not in b"\x00\r\n") or b"x")
_END = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\n\x00\x00"])


@st.composite
def good_records(draw: st.DrawFn) -> bytes:
    """One good framed record: text (latin-1 and all) and a line end, 16 to 255 bytes after the prefix."""
    text, end = draw(_TEXT), draw(_END)
    size = min(max(len(text), MIN_RECORD - len(end)), MAX_RECORD - len(end))
    return framed((text + b"." * MIN_RECORD)[:size] + end)


_GARBAGE = st.lists(st.one_of(
    st.binary(max_size=40),
    st.sampled_from([CORRUPT, b"\r\n", b"\x00", b"\x00\x00\x00", b"R\x00\x00\x00", b"\x52\x00\x00\x00TLC 1"]),
    st.builds(lambda n, tail: bytes([n, 0, 0, 0]) + tail, st.integers(0, 255), st.binary(max_size=60)),
    st.builds(lambda n, text: bytes([n, 0, 0, 0]) + text + b"\r\n", st.integers(0, 255),
              st.binary(max_size=40).map(lambda b: bytes(c for c in b if c not in b"\x00\r\n"))),
    good_records().map(lambda r: r[:-1]),  # a record cut short
), max_size=6).map(b"".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_GARBAGE, good_records()), min_size=1, max_size=12), _GARBAGE,
       st.lists(st.integers(1, 97), min_size=1, max_size=5))
def test_every_good_record_survives_arbitrary_garbage_between_records(
        pieces: list[tuple[bytes, bytes]], tail: bytes, chunks: list[int]) -> None:
    """Good records with arbitrary garbage before, between and after them: every good record is cut where it
    starts (none is swallowed by garbage that looks like a record), the bytes journalled (records with their
    framing, plus Skipped garbage) are exactly the input, and chunking does not change the frames."""
    data = b""
    good_at: list[int] = []
    for garbage, good in pieces:
        data += garbage
        good_at.append(len(data))
        data += good
    data += tail
    frames = frame_all(data)
    starts = set(account(data, frames))
    assert [at for at in good_at if at not in starts] == [], "good records lost"
    journalled = sum(len(f.raw) if isinstance(f, Skipped) else 0 for f in frames) + sum(
        struct.unpack_from("<I", data, at)[0] + 4 for at in starts)
    assert journalled == len(data)
    assert frame_all(data, chunks) == frames
