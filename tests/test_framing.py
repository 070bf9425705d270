"""The framer: PBX byte streams cut into lines, whatever the line ends and however the bytes arrive."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.framing import Framer, Oversized


def frame_all(chunks: list[bytes], max_line: int = 8192) -> list[bytes | Oversized]:
    framer = Framer(max_line)
    out: list[bytes | Oversized] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    out.extend(framer.close())
    return out


def test_every_vendor_line_end_is_understood() -> None:
    """CR, LF, CRLF, LF-LF, NUL padding and form feeds all end a line; blank lines vanish."""
    data = b"a\rb\nc\r\nd\n\ne\x00\x00\x00f\x0cg\r\n\x0c\r\nh"
    assert frame_all([data]) == [b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"]


def test_avaya_cm_header_record_is_its_own_line() -> None:
    """Avaya CM's 16-byte header record (HH:MM MM/DD CR LF NUL NUL NUL) is one line before the records."""
    assert frame_all([b"10:22 03/04\r\n\x00\x00\x00REC1\r\n"]) == [b"10:22 03/04", b"REC1"]


def test_line_split_across_reads_is_joined() -> None:
    assert frame_all([b"2017/07/01 08:", b"13:24,00:00", b":20\r", b"\nnext\r\n"]) == [
        b"2017/07/01 08:13:24,00:00:20", b"next"]


def test_unterminated_tail_is_returned_at_close() -> None:
    """A last line without its line end (or a peer that went away mid-line) is not lost."""
    framer = Framer()
    assert framer.feed(b"one\r\ntw") == [b"one"]
    assert framer.pending == 2
    assert framer.close() == [b"tw"]
    assert framer.close() == []


def test_bytes_are_kept_raw() -> None:
    """Non-UTF-8 bytes survive framing untouched; decoding is the pipeline's job."""
    assert frame_all([b"caf\xe9\xff\r\n"]) == [b"caf\xe9\xff"]


def test_over_long_line_becomes_one_error_frame_and_memory_stays_bounded() -> None:
    """A 1 MB line with no newline is reported once (its head kept) and the next line still arrives."""
    framer = Framer(max_line=100)
    out: list[bytes | Oversized] = []
    for _ in range(1000):
        out.extend(framer.feed(b"x" * 1000))
        assert framer.pending <= 100
    out.extend(framer.feed(b"tail of the monster\r\ngood line\r\n"))
    assert out == [Oversized(b"x" * 100, 100), b"good line"]
    assert framer.discarded_bytes == 1_000_000 - 100 + len(b"tail of the monster")


def test_over_long_line_in_one_chunk() -> None:
    assert frame_all([b"y" * 50 + b"\nok\n"], max_line=10) == [Oversized(b"y" * 10, 10), b"ok"]


def test_line_at_exactly_the_limit_is_kept() -> None:
    assert frame_all([b"z" * 10 + b"\n"], max_line=10) == [b"z" * 10]


_line = st.binary(max_size=40).map(lambda b: bytes(c for c in b if c not in b"\r\n\x00\x0c"))
_end = st.sampled_from([b"\r\n", b"\n", b"\r", b"\n\n", b"\x00", b"\x0c", b"\r\n\x00\x00"])


@settings(max_examples=300)
@given(lines=st.lists(st.tuples(_line, _end), max_size=30), cuts=st.lists(st.integers(0, 2000), max_size=40))
def test_any_chunking_yields_the_same_lines(lines: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    """However the network splits a byte stream, the same lines come out, in order."""
    data = b"".join(text + end for text, end in lines)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    expected = [text for text, _ in lines if text]
    assert frame_all(chunks) == expected
    assert frame_all([data]) == expected


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_framer_never_holds_more_than_its_limit(chunks: list[bytes]) -> None:
    framer = Framer(max_line=64)
    for chunk in chunks:
        for frame in framer.feed(chunk):
            assert len(frame.head if isinstance(frame, Oversized) else frame) <= 64
        assert framer.pending <= 64
