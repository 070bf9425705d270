"""The call observers are a list: a second observer runs beside the first instead of silently replacing it."""

from __future__ import annotations

from smdrd.core import Observe, RatingLike, process_frame
from smdrd.framing import Framer
from smdrd.ingest import Hooks
from smdrd.journal import Alert
from smdrd.parsing import ParserContext, get_parser_class
from smdrd.record import CallRecord

LINE = (b"2026/03/02 09:15:00,00:01:05,2,201,O,0123456789,0123456789,,0,1000123,0,E201,Alice,T9001,"
        b"Line 1.1,0,0,,,,,,,,,,,,,,,,,")


def test_every_observer_added_sees_each_call_and_their_alerts_add_up() -> None:
    seen: list[tuple[str, str]] = []

    def observer(name: str) -> Observe:
        def observe(record: CallRecord, rating: RatingLike | None, uid: str) -> list[Alert]:
            seen.append((name, record.extension))
            return [Alert(f"{name}:{uid}", name, "warning", 0, "{}")]
        return observe

    hooks = Hooks()
    hooks.add_observer(observer("first"))
    hooks.add_observer(observer("second"))
    parser = get_parser_class("avaya-ipo")(ParserContext())
    frame = Framer(8192).feed(LINE + b"\r\n")[0]
    entry = process_frame(frame, parser, "utf-8", source="s", peer="p", received_at=0, rate=hooks.rate,
                          observe=hooks.observe)
    assert entry.error is None, entry.error
    assert seen == [("first", "201"), ("second", "201")]
    assert [a.rule for a in entry.alerts] == ["first", "second"]


def test_one_observer_is_called_directly() -> None:
    def observe(record: CallRecord, rating: RatingLike | None, uid: str) -> list[Alert]:
        return []

    hooks = Hooks()
    hooks.add_observer(observe)
    assert hooks.observe is observe
