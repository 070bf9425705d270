"""Number normalisation: access codes, national and international prefixes, local numbers, classes."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.rating.normalise import Dialplan, normalise, normalise_uncached

#: the module itself (``smdrd.rating.normalise`` as an attribute may name the function, see smdrd.rating).
normalise_module = importlib.import_module("smdrd.rating.normalise")

UK = Dialplan("GB", "020", ("9",))
US = Dialplan("US", "212", ("9",))
DE = Dialplan("DE", "089", ("0",))
PL = Dialplan("PL", "", ("0",))


@pytest.mark.parametrize(
    ("plan", "dialled", "e164", "call_class"),
    [
        # UK: access code 9, national prefix 0, international prefix 00, London area code 20.
        (UK, "902079460000", "+442079460000", "local"),
        (UK, "9 020 7946 0000#", "+442079460000", "local"),
        (UK, "79460000", "+442079460000", "local"),
        (UK, "901214960000", "+441214960000", "national"),
        (UK, "907911123456", "+447911123456", "mobile"),
        (UK, "+447911123456", "+447911123456", "mobile"),  # region GG, still a UK mobile
        (UK, "908001234567", "+448001234567", "toll-free"),
        (UK, "909098790000", "+449098790000", "premium"),
        (UK, "90012125551234", "+12125551234", "international"),
        # NANP: national prefix 1, international prefix 011, 7-digit local numbers.
        (US, "95551234", "+12125551234", "local"),
        (US, "912125551234", "+12125551234", "local"),
        (US, "2125551234", "+12125551234", "local"),
        (US, "93125551234", "+13125551234", "national"),
        (US, "18005551234", "+18005551234", "toll-free"),
        (US, "9011442079460000", "+442079460000", "international"),
        (US, "18765551234", "+18765551234", "international"),  # Jamaica shares +1 but is abroad
        (US, "16135550123", "+16135550123", "national"),  # Canada
        # Germany with access code 0: "0" + "030..." and Munich local numbers.
        (DE, "0030123456", "+4930123456", "national"),
        (DE, "03012345", "+49893012345", "local"),  # Munich 301 2345, not Berlin 30 12345
        (DE, "001711234567", "+491711234567", "mobile"),
        (DE, "000441214960000", "+441214960000", "international"),
        # Poland: closed numbering plan, no national prefix, access code 0.
        (PL, "0221234567", "+48221234567", "national"),
        (PL, "0600123456", "+48600123456", "mobile"),
        (PL, "000442079460000", "+442079460000", "international"),
        (PL, "221234567", "+48221234567", "national"),
    ],
)
def test_normalises_to_e164_and_class(plan: Dialplan, dialled: str, e164: str, call_class: str) -> None:
    """A user would see the wrong number or class in reports for a call dialled this way."""
    number = normalise_uncached(dialled, plan)
    assert (number.e164, number.call_class) == (e164, call_class)
    assert number.key == e164[1:]


@pytest.mark.parametrize(
    ("plan", "dialled"), [(UK, "999"), (UK, "9999"), (UK, "112"), (US, "911"), (US, "9911"), (DE, "0112"),
                          (PL, "112"), (PL, "0997")],
)
def test_emergency_numbers_are_emergency_not_internal(plan: Dialplan, dialled: str) -> None:
    """999 or 911 dialled from an office shows as emergency, never as an extension, and is never priced."""
    number = normalise_uncached(dialled, plan)
    assert number.call_class == "emergency"
    assert number.key == ""


@pytest.mark.parametrize("dialled", ["201", "4021", "12345"])
def test_short_numbers_are_internal(dialled: str) -> None:
    """Extensions (up to internal_max_digits digits) are internal calls."""
    assert normalise_uncached(dialled, UK).call_class == "internal"


def test_internal_max_digits_is_respected() -> None:
    """With 3-digit extensions, a 4-digit number is not internal."""
    plan = Dialplan("GB", "020", ("9",), internal_max_digits=3)
    assert normalise_uncached("4021", plan).call_class != "internal"


@pytest.mark.parametrize(("dialled", "call_class"), [("ANONYMOUS", "unknown"), ("", "unknown"),
                                                     ("*69", "special"), ("9118118", "special")])
def test_not_phone_numbers(dialled: str, call_class: str) -> None:
    """Withheld numbers, feature codes and short codes have no E.164 form."""
    number = normalise_uncached(dialled, UK)
    assert (number.e164, number.call_class) == ("", call_class)


def test_area_code_with_or_without_national_prefix() -> None:
    """area_code = "020" and "20" mean the same."""
    assert normalise_uncached("79460000", Dialplan("GB", "20")) == normalise_uncached("79460000", UK)


def test_unknown_country_is_refused() -> None:
    """A country phonenumbers does not know is a configuration error, not a silent US default."""
    with pytest.raises(ValueError, match="unknown country"):
        Dialplan("XX")


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="0123456789+# -*", max_size=16))
def test_cache_agrees_with_uncached(dialled: str) -> None:
    """The cache must never change an answer."""
    assert normalise(dialled, UK) == normalise_uncached(dialled, UK)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from([UK, US, DE, PL]),
       st.from_regex(r"(9|0)?(00|011|0|1)?[0-9]{0,12}", fullmatch=True) | st.text(alphabet="0123456789+*", max_size=14))
def test_a_number_parsed_once_reads_as_one_parsed_each_time(plan: Dialplan, dialled: str) -> None:
    """A new number's readings share their phonenumbers parse (the short-code pass reuses the first one's):
    the answers are those of a fresh parse every time."""
    shared = normalise_uncached(dialled, plan)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(normalise_module, "_parse_once",
                   lambda parsed, text, region: normalise_module.parse_digits(text, region))
        assert normalise_uncached(dialled, plan) == shared


def test_dialplans_with_equal_fields_share_cache_entries() -> None:
    """Two equal dial plans (e.g. before and after a reload) are the same cache key."""
    normalise.cache_clear()
    normalise("902079460000", Dialplan("GB", "020", ("9",)))
    normalise("902079460000", Dialplan("GB", "020", ("9",)))
    assert normalise.cache_info().hits == 1


def test_a_canadian_site_rates_the_us_territories_as_national_as_docs_say() -> None:
    """docs/rating.md: a US or Canadian site treats the US, Canada and the US territories as national; a Canadian
    site called Puerto Rico and Guam international."""
    plan = Dialplan("CA", area_code="416", access_codes=("9",))
    for dialled in ("917875551234", "916715551234", "912125551234"):
        number = normalise(dialled, plan)
        assert number.call_class == "national", (dialled, number)
