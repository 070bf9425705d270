"""A journal entry payload read back by the central collector (`smdrd.mqtt_payloads.read_journal_message`, orjson)
is what the site encoded (stdlib json): any text, any 64-bit number, any bytes of the PBX's line; and what is not
such a payload is a ValueError (the collector logs it and acknowledges it)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smdrd.mqtt_payloads import encode, journal_message, read_journal_message

text = st.text()
number = st.integers(min_value=-(2**63), max_value=2**63 - 1)
value = st.recursive(st.none() | st.booleans() | number | text | st.floats(allow_nan=False, allow_infinity=False),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                     max_leaves=8)
call = st.dictionaries(text, value, max_size=6)


@given(fields=st.fixed_dictionaries({
    "id": number, "source": text, "peer": text, "received_at": number, "format": text, "raw": st.binary(),
    "status": text, "error": st.none() | text, "calls": st.lists(call, max_size=3)}))
def test_an_entry_reads_back_as_the_site_encoded_it(fields: dict[str, Any]) -> None:
    payload = encode(journal_message("site-1", fields))
    read = read_journal_message(payload)
    assert read == {**json.loads(payload), "raw": fields["raw"]}
    assert read == {"v": 1, "site": "site-1", **fields}


@pytest.mark.parametrize("payload", [
    b"not json", b"", b"[1, 2]", b'{"v": 2, "site": "a"}', b'{"v": 1, "site": "a/b"}',
    b'{"v": 1, "site": "a", "raw": "!!", "id": 1}',
    json.dumps({"v": 1, "site": "a", "raw": base64.b64encode(b"x").decode()}).encode(),  # no id, source, ...
    b'{"v": 1, "site": "\xff"}',  # not UTF-8
])
def test_what_is_not_an_entry_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        read_journal_message(payload)
