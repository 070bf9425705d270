"""Number masking (issue 15, point 2): `smdrd.privacy` hides the last digits of dialled numbers from the roles
that need not see them; the reports apply it to every format they serve (JSON, CSV, XLSX), on a real daemon."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from smdrd.privacy import (
    MASK,
    PrivacyConfig,
    hidden_digits,
    mask,
    mask_number,
    mask_within,
    seen_match,
    visible_part,
)
from smdrd.testing import running_daemon
from tests.test_reports import CALLS, settings_for, write_calls
from tests.test_reports_http import MARCH, get, port_of


@dataclass(frozen=True)
class Who:
    role: str


NUMBERS = st.text(alphabet="0123456789+ #-", max_size=16)


@given(NUMBERS, st.lists(st.sampled_from("0123456789"), min_size=15, max_size=15), NUMBERS,
       st.integers(min_value=0, max_value=6))
def test_a_search_answers_on_the_visible_digits_alone(number: str, others: list[str], term: str,
                                                      digits: int) -> None:
    """Two numbers shown alike (they differ only in hidden digits) are found alike by any search term: no
    answer tells a hidden digit. The visible part is what the mask leaves before its first hidden digit."""
    shown = mask(number, digits)
    hidden = [i for i, c in enumerate(shown) if c == MASK and number[i] != MASK]
    twin = list(number)
    for i, other in zip(hidden, others, strict=False):
        twin[i] = other
    assert mask("".join(twin), digits) == shown
    assert seen_match(number, term, digits) == seen_match("".join(twin), term, digits)
    assert shown.startswith(visible_part(number, digits)) and MASK not in visible_part(number, digits)


def test_a_whole_number_typed_finds_what_is_shown() -> None:
    assert visible_part("0600123456", 3) == "0600123" and visible_part("12", 3) == "" and \
        visible_part("+48 600 123 456", 3) == "+48 600 123 "
    assert seen_match("0600123456", "0600123456", 3) and seen_match("0600123456", "0600123999", 3)
    assert seen_match("+48600123456", "600123", 3) and not seen_match("0600123456", "456", 3)
    assert not seen_match("0600123456", "0600124456", 3), "a visible digit differs"
    assert seen_match("0600123456", "0600123456", 0) and not seen_match("0600123456", "0600123999", 0)


def test_off_by_default_and_admins_see_numbers_whole() -> None:
    default = PrivacyConfig()
    assert default.mask_digits == 0 and default.unmasked_roles == ["admin"]
    assert mask_number("+442071234567", Who("viewer"), default) == "+442071234567", "off: today's behaviour"
    on = PrivacyConfig(mask_digits=3)
    assert mask_number("+442071234567", Who("admin"), on) == "+442071234567"
    for role in ("manager", "viewer", "service"):
        assert mask_number("+442071234567", Who(role), on) == "+442071234***"
    assert hidden_digits(None, on) == 3, "nobody known: masked"
    assert mask_number("+44 20 7123 4567", Who("viewer"), PrivacyConfig(mask_digits=5)) == "+44 20 712* ****"
    assert mask_number("911", Who("viewer"), PrivacyConfig(mask_digits=4)) == "***"
    assert mask_number("", Who("viewer"), on) == ""
    assert mask_number("+12125551234", Who("viewer"), PrivacyConfig(mask_digits=3,
                                                                    unmasked_roles=["admin", "viewer"])) == \
        "+12125551234"


def test_numbers_inside_a_text_are_masked_too() -> None:
    reason = "long call: 2:05:00 to +442071234567 from 201 (442071234567 again)"
    assert mask_within(reason, ["+442071234567", None], 3) == \
        "long call: 2:05:00 to +442071234*** from 201 (442071234*** again)"
    assert mask_within(reason, ["+442071234567"], 0) == reason
    assert mask_within("", ["123"], 3) == ""


def test_the_configuration_names_what_is_wrong() -> None:
    with pytest.raises(ValidationError, match="expected roles among admin, manager, viewer, service"):
        PrivacyConfig(unmasked_roles=["boss"])
    with pytest.raises(ValidationError):
        PrivacyConfig(mask_digits=-1)
    with pytest.raises(ValidationError):
        PrivacyConfig(mask_digits=16)


@given(st.text(alphabet="0123456789+ #*-()٣", max_size=30), st.integers(0, 15))
def test_masking_hides_exactly_the_last_digits_and_keeps_everything_else(number: str, digits: int) -> None:
    out = mask(number, digits)
    assert len(out) == len(number)
    ascii_digits = [i for i, c in enumerate(number) if "0" <= c <= "9"]
    hidden = set(ascii_digits[len(ascii_digits) - min(digits, len(ascii_digits)):])
    for i, (before, after) in enumerate(zip(number, out, strict=True)):
        assert after == (MASK if i in hidden else before)


async def test_reports_mask_numbers_in_every_format_for_roles_not_unmasked(tmp_path: Path) -> None:
    """Without users or a token every request is the ``service`` role: masked unless it is listed."""
    db = tmp_path / "smdrd.db"
    await write_calls(db, CALLS)
    url = f"/api/reports/calls?{MARCH}&page_size=1000"
    for unmasked, expect_masked in ((["admin"], True), (["admin", "service"], False)):
        settings = settings_for(db, http={"listen": "127.0.0.1:0"},
                                privacy={"mask_digits": 4, "unmasked_roles": unmasked})
        async with running_daemon(settings, features=("reports",)) as daemon:
            port = port_of(daemon)
            status, _, body = await get(port, url)
            assert status == 200
            numbers = [row["number"] for row in json.loads(body)["rows"]]
            status, _, body = await get(port, f"{url}&format=csv")
            assert status == 200
            rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))  # a BOM first, for Excel
            numbers_csv = [r["number"] for r in rows if r.get("start") not in (None, "", "Total")]
            status, _, body = await get(port, f"{url}&format=xlsx")
            assert status == 200
            import openpyxl

            book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
            cells = [str(c) for sheet in book.worksheets for row in sheet.iter_rows(values_only=True) for c in row
                     if isinstance(c, str) and c[-1:] in ("*", *"0123456789") and c.lstrip("+*0123456789") == ""]
        assert numbers and len(numbers_csv) == len(numbers)
        for shown in (numbers, numbers_csv):
            if expect_masked:
                assert all(n.endswith("****") for n in shown if n), shown
            else:
                assert not any(MASK in n for n in shown), shown
        whole = [c for c in cells if not c.endswith("****") and len(c) > 6]
        assert (not whole) if expect_masked else whole, cells
