"""The SQLite store's call rows: the fast paths of `smdrd.store.sqlite.rows` give what the plain mapping gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from smdrd.journal import RatedCall
from smdrd.record import Direction, new_record
from smdrd.store.sqlite.rows import call_row, encode_extra


def _plain(extra: dict[str, object]) -> str:
    return json.dumps(extra, ensure_ascii=False, separators=(",", ":"))


@given(st.dictionaries(st.text(), st.text(), max_size=8))
def test_extra_of_strings_is_encoded_as_json_dumps_does(extra: dict[str, str]) -> None:
    assert encode_extra(extra) == _plain(dict(extra))
    assert json.loads(encode_extra(extra)) == extra


@given(st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=5), st.integers(), st.none(),
                                                      st.lists(st.integers(), max_size=2)), max_size=5))
def test_extra_with_other_values_falls_back_to_the_json_encoder(extra: dict[str, object]) -> None:
    assert encode_extra(extra) == _plain(extra)


def _call(start: datetime, uid: str = "u") -> RatedCall:
    record = new_record("avaya-ipo", start, 61, Direction.OUTBOUND, "200", "0170", 3, "T9005", "", "", "", 0, False,
                        True, "", "", {"a": "ü"})
    return RatedCall(uid, record)


def test_equal_start_times_in_other_offsets_keep_their_own_text() -> None:
    """Two aware times equal as instants but written in different zones are stored each as written, one after
    the other (the row reuses the last start's text only for the very same object)."""
    utc = datetime(2026, 11, 29, 20, 15, tzinfo=UTC)
    warsaw = utc.astimezone(ZoneInfo("Europe/Warsaw"))
    fixed = utc.astimezone(timezone(timedelta(hours=-5)))
    rows = [call_row(_call(start), "pbx") for start in (utc, warsaw, warsaw, fixed, utc)]
    assert [r[5] for r in rows] == [utc.isoformat(), warsaw.isoformat(), warsaw.isoformat(), fixed.isoformat(),
                                    utc.isoformat()]
    assert {r[6] for r in rows} == {int(utc.timestamp())}
    naive = datetime(2026, 11, 29, 20, 15)
    assert call_row(_call(naive), "pbx")[5:7] == (naive.isoformat(), int(utc.timestamp()))
    assert call_row(_call(utc), "pbx")[18] == '{"a":"ü"}'
