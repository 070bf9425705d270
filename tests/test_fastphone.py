"""`smdrd.rating.fastphone` answers what phonenumbers answers, on every region and type.

The rater uses `parse_digits` and `region_and_type` in place of ``phonenumbers.parse``,
``phonenumbers.region_code_for_number`` and ``phonenumbers.number_type`` (see the module's docstring), so any
difference would change a call's number or class, and so its price. Each test compares the two.
"""

from __future__ import annotations

import importlib
from typing import Any

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumber, PhoneNumberType

from smdrd.rating.fastphone import could_be_short_code, is_possible, parse_digits, region_and_type

_TYPES = [v for k, v in vars(PhoneNumberType).items() if k.isupper() and isinstance(v, int)]
_CALLING_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def _phonenumbers_answer(num: PhoneNumber) -> tuple[str | None, int]:
    return phonenumbers.region_code_for_number(num), phonenumbers.number_type(num)


def _variants(num: PhoneNumber) -> list[PhoneNumber]:
    """The number, and near misses of it: one digit more, one less, the last one changed."""
    nsn = str(num.national_number)
    out = [num]
    for digits in (nsn + "0", nsn + "7", nsn[:-1], nsn[:-1] + str((int(nsn[-1]) + 1) % 10)):
        if digits:
            out.append(PhoneNumber(country_code=num.country_code, national_number=int(digits),
                                   italian_leading_zero=num.italian_leading_zero,
                                   number_of_leading_zeros=num.number_of_leading_zeros))
    return out


def _examples() -> list[PhoneNumber]:
    found: list[PhoneNumber] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in _TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                found.extend(_variants(example))
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            found.extend(_variants(example))
    return found


def test_every_example_number_of_every_region_and_type_and_its_near_misses() -> None:
    examples = _examples()
    # Every region's examples were found, so the comparison below covers them (phonenumberslite keeps them).
    assert len(examples) > 5 * len(phonenumbers.SUPPORTED_REGIONS)
    kinds = set()
    for num in examples:
        expected = _phonenumbers_answer(num)
        assert region_and_type(num) == expected, num
        kinds.add(expected[1])
    # The near misses reach the invalid answer, and the examples every type phonenumbers has.
    assert PhoneNumberType.UNKNOWN in kinds
    assert {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE,
            PhoneNumberType.PREMIUM_RATE, PhoneNumberType.TOLL_FREE, PhoneNumberType.VOIP} <= kinds


@pytest.mark.parametrize(("text", "region", "kind"), [
    ("+18765551234", "JM", PhoneNumberType.MOBILE),  # +1 shared: the area code decides
    ("+12125550123", "US", PhoneNumberType.FIXED_LINE_OR_MOBILE),
    ("+14165550123", "CA", PhoneNumberType.FIXED_LINE_OR_MOBILE),
    ("+447781123456", "GG", PhoneNumberType.MOBILE),  # +44 shared with GG, IM, JE
    ("+442079460000", "GB", PhoneNumberType.FIXED_LINE),
    ("+77012345678", "KZ", PhoneNumberType.MOBILE),  # +7 shared with KZ
    ("+80012345678", "001", PhoneNumberType.TOLL_FREE),  # non-geographic
    ("+19005550123", "US", PhoneNumberType.PREMIUM_RATE),
])
def test_known_numbers(text: str, region: str, kind: int) -> None:
    num = phonenumbers.parse(text)
    assert region_and_type(num) == (region, kind) == _phonenumbers_answer(num)


def test_unassigned_calling_code() -> None:
    num = PhoneNumber(country_code=999, national_number=12345678)
    assert region_and_type(num) == (None, PhoneNumberType.UNKNOWN) == _phonenumbers_answer(num)


@settings(max_examples=3000, deadline=None)
@given(code=st.sampled_from(_CALLING_CODES) | st.integers(0, 999), digits=st.text("0123456789", min_size=1,
       max_size=17), leading_zeros=st.integers(0, 2))
def test_random_numbers_in_every_calling_code(code: int, digits: str, leading_zeros: int) -> None:
    num = PhoneNumber(country_code=code, national_number=int(digits),
                      italian_leading_zero=leading_zeros > 0 or None,
                      number_of_leading_zeros=leading_zeros if leading_zeros > 1 else None)
    assert region_and_type(num) == _phonenumbers_answer(num)


@settings(max_examples=2000, deadline=None)
@given(region=st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)), digits=st.text("0123456789", min_size=3,
       max_size=15))
def test_dialled_digits_parsed_in_every_region(region: str, digits: str) -> None:
    """What the normaliser gives it: digits as dialled, parsed in the site's region."""
    try:
        num = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return
    assert region_and_type(num) == _phonenumbers_answer(num)


@settings(max_examples=1500, deadline=None)
@given(country=st.sampled_from(["US", "CA", "GB", "DE", "FR", "IT", "AU", "IN", "JM", "KZ", "RU", "BR", "AR", "MX"]),
       area=st.sampled_from(["", "20", "212", "30", "6", "876", "11"]),
       dialled=st.text("0123456789", min_size=6, max_size=16), plus=st.booleans())
def test_the_normaliser_answers_as_with_phonenumbers_own_functions(country: str, area: str, dialled: str,
                                                                   plus: bool) -> None:
    """The whole normaliser gives the same `Number` with phonenumbers' own parse, region and type."""
    n: Any = importlib.import_module("smdrd.rating.normalise")  # the module: the package's `normalise` is the function
    plan = n.Dialplan(country, area, ("9", "0"))
    number = ("+" if plus else "") + dialled
    fast = n.normalise_uncached(number, plan)
    originals = n.parse_digits, n.region_and_type, n.is_possible, n.could_be_short_code
    n.parse_digits, n.region_and_type = _phonenumbers_parse, _phonenumbers_answer
    n.is_possible, n.could_be_short_code = phonenumbers.is_possible_number, lambda num, region: True
    try:
        reference = n.normalise_uncached(number, plan)
    finally:
        n.parse_digits, n.region_and_type, n.is_possible, n.could_be_short_code = originals
    assert fast == reference


def _phonenumbers_parse(text: str, region: str) -> PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _written(num: PhoneNumber) -> list[str]:
    """The ways a PBX may write ``num``: national, E.164 with and without +, after an IDD."""
    national = "".join(ch for ch in phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
                       if ch.isdigit())
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    return [national, e164, e164[1:], "00" + e164[1:], "011" + e164[1:], "0011" + e164[1:], "810" + e164[1:],
            "9" + national, "0" + national, national[1:], national[:-1], national + "5"]


def test_parse_a_third_of_the_examples_as_pbxs_write_them_in_other_regions() -> None:
    examples = [num for num in _examples() if num.national_number]
    texts = sorted({text for num in examples[::3] for text in _written(num) if text.lstrip("+")})
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    compared = 0
    for i, text in enumerate(texts):
        # every text in the region it came from would repeat its own answer; each in a few regions instead
        for region in (regions[i % len(regions)], regions[(i * 7 + 3) % len(regions)], "US", "GB", "DE", "IT"):
            assert parse_digits(text, region) == _phonenumbers_parse(text, region), (text, region)
            compared += 1
    assert compared > 20_000


@pytest.mark.parametrize("region", sorted(phonenumbers.SUPPORTED_REGIONS))
def test_parse_each_region_own_examples_as_its_people_dial_them(region: str) -> None:
    seen = 0
    for kind in _TYPES:
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        for text in _written(example):
            if text.lstrip("+"):
                assert parse_digits(text, region) == _phonenumbers_parse(text, region), text
                seen += 1
    assert seen > 0


@settings(max_examples=4000, deadline=None)
@given(region=st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)),
       digits=st.text("0123456789", min_size=1, max_size=20), plus=st.booleans())
def test_parse_random_digits_in_every_region(region: str, digits: str, plus: bool) -> None:
    text = ("+" if plus else "") + digits
    assert parse_digits(text, region) == _phonenumbers_parse(text, region)


@settings(max_examples=1000, deadline=None)
@given(region=st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)),
       prefix=st.sampled_from(["", "0", "00", "000", "01", "011", "1", "8", "810", "9", "99", "0011", "+", "+0",
                               "+00", "+1", "+44", "+7"]),
       digits=st.text("0123456789", min_size=0, max_size=14))
def test_parse_digits_after_the_prefixes_that_matter(region: str, prefix: str, digits: str) -> None:
    text = prefix + digits
    if text.lstrip("+"):
        assert parse_digits(text, region) == _phonenumbers_parse(text, region)


@pytest.mark.parametrize("text", ["", "+", "12a4567", "+44 20 7946 0000", "１２３４５６７", "++442079460000", "1"])
def test_other_text_is_parsed_by_phonenumbers(text: str) -> None:
    assert parse_digits(text, "GB") == _phonenumbers_parse(text, "GB")
    assert parse_digits(text, "XX") == _phonenumbers_parse(text, "XX")


def test_is_possible_on_every_example_and_its_near_misses() -> None:
    answers = set()
    for num in _examples():
        answers.add(is_possible(num))
        assert is_possible(num) == phonenumbers.is_possible_number(num), num
    assert answers == {True, False}


@settings(max_examples=2000, deadline=None)
@given(code=st.sampled_from(_CALLING_CODES) | st.integers(0, 999), digits=st.text("0123456789", min_size=1,
       max_size=17))
def test_is_possible_on_random_numbers(code: int, digits: str) -> None:
    num = PhoneNumber(country_code=code, national_number=int(digits))
    assert is_possible(num) == phonenumbers.is_possible_number(num)


def _short_code_examples() -> list[tuple[str, str]]:
    from phonenumbers import shortnumberinfo

    out = []
    for region in sorted(shortnumberinfo.SUPPORTED_SHORT_REGIONS):
        example = shortnumberinfo._example_short_number(region)
        if example:
            out.append((region, example))
    return out


def test_a_short_code_is_never_ruled_out() -> None:
    """Where phonenumbers says a dialled number is a valid short code, `could_be_short_code` never says no."""
    from phonenumbers import shortnumberinfo

    examples = _short_code_examples()
    assert len(examples) > 200
    for region, digits in examples:
        num = _phonenumbers_parse(digits, region)
        assert num is not None
        assert shortnumberinfo.is_valid_short_number_for_region(num, region), (region, digits)
        assert could_be_short_code(num, region), (region, digits)


@settings(max_examples=3000, deadline=None)
@given(region=st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)), digits=st.text("0123456789", min_size=2,
       max_size=12))
def test_could_be_short_code_is_false_only_where_phonenumbers_is(region: str, digits: str) -> None:
    from phonenumbers import shortnumberinfo

    num = _phonenumbers_parse(digits, region)
    if num is not None and not could_be_short_code(num, region):
        assert not shortnumberinfo.is_valid_short_number_for_region(num, region)
