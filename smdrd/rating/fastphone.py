"""phonenumbers' ``parse``, ``region_code_for_number``, ``number_type`` and ``is_possible_number`` for dialled
digits, from the same metadata, at a fraction of their cost.

Normalising a number seen for the first time is most of the cost of rating it, and nearly all of that went
to phonenumbers:

- ``parse`` is written for any text a person may type (letters, Unicode digits, extensions, RFC 3966): it
  normalises every character through a Unicode table and runs a dozen patterns before it looks at the digits.
  What `smdrd.rating.normalise` hands it is ASCII digits, with or without ``+``.
- ``number_type`` first asks for the region, and for a calling code shared by several regions (+1 has 25,
  +44 four, +7 two) that means trying each region in turn: a pattern of leading digits for most, a full
  validation for the others (the US and Canada within +1); the normaliser then asked for the region twice more,
  for the class and for `Number.region`.
- Every check looks its pattern up in ``re``'s cache and its metadata up by name.

Here each region's metadata is read once into a `_Region` of compiled patterns and length sets, `parse_digits`
takes the ASCII-digit path of ``parse`` only, and `region_and_type` gives both answers in one pass, reusing
the type that the region search computed. `is_possible` is ``is_possible_number``, and `could_be_short_code`
is the first test of ``shortnumberinfo.is_valid_short_number_for_region`` (the region's short-code lengths),
so that the long numbers most calls dial skip the rest of it. The algorithms are phonenumbers' own, step for
step (``parse``, ``_maybe_extract_country_code``, ``_maybe_strip_national_prefix_carrier_code``,
``_test_number_length``, ``_region_code_for_number_from_list``, ``_number_type_helper`` and
``is_possible_number_for_type_with_reason`` in ``phonenumberutil.py``). ``tests/test_fastphone.py`` compares
the answers with phonenumbers' on every region's example numbers of every type (each written the ways a PBX
writes it, read in its own region; a third of them also in other regions), on random digits in every region
and calling code, and through the whole normaliser. Any other text goes to phonenumbers itself. Where
phonenumbers' metadata could make phonenumbers itself fail (a region without possible lengths, a transform
rule without a group: none today), the answer here is "not a number" rather than an exception.

Pure: the metadata is static data; the compiled tables are a memo of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberDesc, PhoneNumberType

__all__ = ["could_be_short_code", "is_possible", "parse_digits", "region_and_type"]

_NON_GEO = "001"  # phonenumbers' REGION_CODE_FOR_NON_GEO_ENTITY
_UNKNOWN = PhoneNumberType.UNKNOWN
# phonenumbers' limits (_MIN_LENGTH_FOR_NSN, _MAX_LENGTH_FOR_NSN, _MAX_LENGTH_COUNTRY_CODE)
_MIN_NSN = 2
_MAX_NSN = 17
_MAX_CC = 3
# _test_number_length's answers (phonenumbers' ValidationResult, without the calling-code one); parse keeps a
# national prefix when stripping it leaves one of the first three
_TOO_SHORT, _LOCAL_ONLY, _INVALID_LENGTH, _TOO_LONG, _POSSIBLE = range(5)


@dataclass(frozen=True, slots=True)
class _Desc:
    """A `NumberDesc` ready to test: its national number pattern compiled, its possible lengths as a set."""

    pattern: re.Pattern[str]
    lengths: frozenset[int]

    def matches(self, nsn: str) -> bool:
        # phonenumbers' _is_number_matching_desc: lengths first (when listed), then the whole pattern.
        return (not self.lengths or len(nsn) in self.lengths) and self.pattern.fullmatch(nsn) is not None


def _desc(desc: PhoneNumberDesc | None) -> _Desc | None:
    if desc is None or not desc.national_number_pattern:
        return None  # phonenumbers: no pattern never matches
    return _Desc(re.compile(desc.national_number_pattern), frozenset(desc.possible_length or ()))


# The order phonenumbers tests the special types in, before fixed line and mobile.
_SPECIAL_TYPES = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
)


@dataclass(frozen=True, slots=True)
class _Region:
    """One region's metadata, compiled."""

    code: str
    leading_digits: re.Pattern[str] | None
    general: _Desc | None
    special: tuple[tuple[_Desc, int], ...]
    fixed_line: _Desc | None
    mobile: _Desc | None
    same_mobile_and_fixed: bool
    # what parsing needs
    country_code: int = 0
    idd: re.Pattern[str] | None = None
    national_prefix: re.Pattern[str] | None = None
    transform: str | None = None
    lengths: tuple[int, ...] = ()
    local_lengths: tuple[int, ...] = ()

    @classmethod
    def of(cls, code: str, meta: PhoneMetadata) -> _Region:
        special = tuple((d, kind) for name, kind in _SPECIAL_TYPES if (d := _desc(getattr(meta, name))) is not None)
        general = meta.general_desc
        return cls(code, re.compile(meta.leading_digits) if meta.leading_digits is not None else None,
                   _desc(general), special, _desc(meta.fixed_line), _desc(meta.mobile),
                   bool(meta.same_mobile_and_fixed_line_pattern), meta.country_code or 0,
                   re.compile(meta.international_prefix) if meta.international_prefix is not None else None,
                   re.compile(meta.national_prefix_for_parsing) if meta.national_prefix_for_parsing else None,
                   meta.national_prefix_transform_rule or None,
                   tuple(general.possible_length or ()) if general is not None else (),
                   tuple(general.possible_length_local_only or ()) if general is not None else ())

    def general_match(self, digits: str) -> bool:
        """phonenumbers' ``_match_national_number`` on the general description: the pattern, not the lengths."""
        return self.general is not None and self.general.pattern.fullmatch(digits) is not None

    def length(self, nsn: str) -> int:
        """phonenumbers' ``_test_number_length`` for any type."""
        n = len(nsn)
        if n in self.local_lengths:
            return _LOCAL_ONLY
        if not self.lengths:
            return _INVALID_LENGTH  # phonenumbers would fail here (IndexError); no region has no lengths today
        if self.lengths[0] == n:
            return _POSSIBLE
        if self.lengths[0] > n:
            return _TOO_SHORT
        if self.lengths[-1] < n:
            return _TOO_LONG
        return _POSSIBLE if n in self.lengths[1:] else _INVALID_LENGTH

    def strip_national_prefix(self, digits: str) -> str:
        """phonenumbers' ``_maybe_strip_national_prefix_carrier_code``, without the carrier code."""
        prefix = self.national_prefix
        if not digits or prefix is None:
            return digits
        match = prefix.match(digits)
        if match is None:
            return digits
        viable = self.general_match(digits)
        groups = match.groups()
        if not self.transform or not groups or groups[-1] is None:
            rest = digits[match.end():]
        else:
            rest = prefix.sub(self.transform, digits, count=1)
        if viable and not self.general_match(rest):
            return digits
        return rest

    def number_type(self, nsn: str) -> int:
        """phonenumbers' ``_number_type_helper``."""
        if self.general is None or not self.general.matches(nsn):
            return _UNKNOWN
        for desc, kind in self.special:
            if desc.matches(nsn):
                return kind
        mobile = self.mobile
        if self.fixed_line is not None and self.fixed_line.matches(nsn):
            if self.same_mobile_and_fixed or (mobile is not None and mobile.matches(nsn)):
                return PhoneNumberType.FIXED_LINE_OR_MOBILE
            return PhoneNumberType.FIXED_LINE
        if not self.same_mobile_and_fixed and mobile is not None and mobile.matches(nsn):
            return PhoneNumberType.MOBILE
        return _UNKNOWN


_compiled: dict[int, tuple[_Region, ...]] = {}


def _regions(country_code: int) -> tuple[_Region, ...]:
    """The calling code's regions in phonenumbers' order, compiled once; ``()`` for an unassigned code."""
    regions = _compiled.get(country_code)
    if regions is None:
        out = []
        for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
            if code == _NON_GEO:
                meta = PhoneMetadata.metadata_for_nongeo_region(country_code, None)
                region = _Region.of(code, meta) if meta is not None else None
            else:
                region = _region(code)
            # phonenumbers skips a region it has no metadata for (in the region search; for a calling code of
            # one region, number_type is then UNKNOWN): a region that never matches does the same
            out.append(region or _Region(code, None, None, (), None, None, False))
        regions = _compiled[country_code] = tuple(out)
    return regions


def region_and_type(num: phonenumbers.PhoneNumber) -> tuple[str | None, int]:
    """``(phonenumbers.region_code_for_number(num), phonenumbers.number_type(num))``, in one pass."""
    regions = _regions(num.country_code or 0)
    if not regions:
        return None, _UNKNOWN
    nsn = phonenumbers.national_significant_number(num)
    if len(regions) == 1:
        region = regions[0]
        return region.code, region.number_type(nsn)
    for region in regions:
        if region.general is None and region.leading_digits is None:
            continue  # phonenumbers: a region without metadata is skipped
        if region.leading_digits is not None:
            if region.leading_digits.match(nsn):
                return region.code, region.number_type(nsn)
        elif (kind := region.number_type(nsn)) != _UNKNOWN:
            return region.code, kind
    return None, _UNKNOWN  # no region: number_type finds no metadata, so UNKNOWN


_by_code: dict[str, _Region | None] = {}


def _region(code: str) -> _Region | None:
    """A geographic region's compiled metadata, or None when phonenumbers has none."""
    try:
        return _by_code[code]
    except KeyError:
        meta = PhoneMetadata.metadata_for_region(code, None)
        region = _by_code[code] = _Region.of(code, meta) if meta is not None else None
        return region


def _main_region(country_code: int) -> _Region | None:
    """What ``metadata_for_region_or_calling_code(cc, region_code_for_country_code(cc))`` gives."""
    codes = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not codes:
        return None
    if codes[0] == _NON_GEO:
        regions = _regions(country_code)
        return regions[0] if regions and regions[0].general is not None else None
    return _region(codes[0])


def _country_code(digits: str) -> tuple[int, str]:
    """phonenumbers' ``_extract_country_code``."""
    if not digits or digits[0] == "0":
        return 0, digits
    known = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
    for i in range(1, min(len(digits), _MAX_CC) + 1):
        if int(digits[:i]) in known:
            return int(digits[:i]), digits[i:]
    return 0, digits


class _NotANumber(Exception):
    """What phonenumbers would raise NumberParseException for."""


def _extract(digits: str, plus: bool, home: _Region) -> tuple[int, str]:
    """phonenumbers' ``_maybe_extract_country_code`` for ASCII digits: ``(calling code, rest)`` or ``(0, "")``."""
    international = plus
    if not plus and home.idd is not None and (match := home.idd.match(digits)) is not None:
        rest = digits[match.end():]
        if not rest or rest[0] != "0":  # a calling code never starts with 0: then it was not an IDD
            international, digits = True, rest
    if international:
        if len(digits) <= _MIN_NSN:
            raise _NotANumber
        code, rest = _country_code(digits)
        if code == 0:
            raise _NotANumber
        return code, rest
    own = str(home.country_code)
    if digits.startswith(own):
        rest = home.strip_national_prefix(digits[len(own):])
        if (not home.general_match(digits) and home.general_match(rest)) or home.length(digits) == _TOO_LONG:
            return home.country_code, rest
    return 0, ""


def parse_digits(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    """``phonenumbers.parse(text, region)``, or None where it raises: for ``text`` of ASCII digits with or
    without a leading ``+``, dialled in the supported region ``region``; any other text or region is handed to
    phonenumbers itself."""
    plus = text[:1] == "+"
    digits = text[1:] if plus else text
    home = _region(region) if region in phonenumbers.SUPPORTED_REGIONS else None
    if home is None or len(digits) < 3 or not digits.isdigit() or not digits.isascii() or home.general is None:
        return _parse(text, region)
    try:
        try:
            code, nsn = _extract(digits, plus, home)
        except _NotANumber:
            if not plus:
                raise
            code, nsn = _extract(digits, False, home)  # "+" then no calling code: parse tries without the +
            if code == 0:
                raise
        if code != 0:
            meta = _main_region(code)  # phonenumbers: the calling code's main region (``home`` for its own)
        else:
            meta, nsn, code = home, digits, home.country_code
        if len(nsn) < _MIN_NSN:
            return None
        if meta is not None and meta.general is not None:
            stripped = meta.strip_national_prefix(nsn)
            if meta.length(stripped) not in (_TOO_SHORT, _LOCAL_ONLY, _INVALID_LENGTH):
                nsn = stripped
    except _NotANumber:
        return None
    if len(nsn) > _MAX_NSN or len(nsn) < _MIN_NSN:
        return None
    num = phonenumbers.PhoneNumber(country_code=code, national_number=int(nsn))
    if len(nsn) > 1 and nsn[0] == "0":  # phonenumbers' _set_italian_leading_zeros_for_phone_number
        num.italian_leading_zero = True
        zeros = 1
        while zeros < len(nsn) - 1 and nsn[zeros] == "0":
            zeros += 1
        if zeros != 1:
            num.number_of_leading_zeros = zeros
    return num


def is_possible(num: phonenumbers.PhoneNumber) -> bool:
    """``phonenumbers.is_possible_number(num)``: its length is possible in its calling code's main region."""
    region = _main_region(num.country_code or 0)
    return region is not None and region.length(phonenumbers.national_significant_number(num)) in (
        _POSSIBLE, _LOCAL_ONLY)


_short_lengths: dict[str, frozenset[int] | None] = {}


def could_be_short_code(num: phonenumbers.PhoneNumber, region: str) -> bool:
    """False when ``shortnumberinfo.is_valid_short_number_for_region(num, region)`` is sure to be: the region
    has no short codes of that length (its first test after the calling code). Most dialled numbers are far
    longer than any short code, and this answers them without the rest of its work."""
    try:
        lengths = _short_lengths[region]
    except KeyError:
        meta = PhoneMetadata.short_metadata_for_region(region)
        desc = meta.general_desc if meta is not None else None
        lengths = _short_lengths[region] = (
            frozenset(desc.possible_length) if desc is not None and desc.possible_length else None)
    return lengths is None or len(phonenumbers.national_significant_number(num)) in lengths


def _parse(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
