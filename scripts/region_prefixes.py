"""Print the E.164 prefix-to-region table that migration 10 freezes (`smdrd.store.sqlite.regions`).

Migration 10 gives every call already stored its ISO 3166 region from its ``e164``, in SQL (a migration cannot
call Python: restore and the benchmarks run its text as it is). This derives that table from phonenumbers'
metadata, so the table is what `phonenumbers.region_code_for_number` says, frozen:

* a calling code used by one region maps to it (``33`` -> ``FR``);
* a shared code (``1``, ``7``, ``44``, ``47``, ``61``, ``590``...) is split by the national number's first
  digits, as deep as phonenumbers' answer for random numbers under a prefix still differs (up to `DEPTH`
  digits; a prefix still split there is left out) (NANP area codes:
  ``1809`` -> ``DO``, ``1876`` -> ``JM``, ``1416`` -> ``CA``, ``1212`` -> ``US``); a prefix under which no
  number has a region (an unassigned area code) is left out: such calls get ``''``, as phonenumbers says None;
* non-geographic codes (``800``, ``882``...: phonenumbers' region ``001``) are left out.

Run ``python scripts/region_prefixes.py > table.txt`` and paste its output into a *new* frozen constant: the
table shipped in a migration never changes (`tests/test_regions.py` checks it against phonenumbers).
"""

from __future__ import annotations

import random
from collections import Counter

import phonenumbers
from phonenumbers import PhoneMetadata

#: random numbers tried per prefix and per possible national length; a prefix they agree on is tried again
#: with `CONFIRM` before it is listed (a small region inside a large one's range: BL's +590 590 27).
SAMPLES = 12
CONFIRM = 150
#: how deep every prefix of a shared code is tried, whatever the samples above it said: NANP area codes have
#: three digits, and a smaller region inside a larger one's range starts at the fourth (GG ``1481``, JE ``7700``).
MIN_DEPTH = {1: 3}
MIN_DEPTH_OTHERS = 4
#: the deepest national prefix tried (IM's ``74576`` has five digits).
DEPTH = 6


def _lengths(code: int, regions: list[str]) -> list[int]:
    lengths: set[int] = set()
    for region in regions:
        meta = PhoneMetadata.metadata_for_region(region)
        if meta is not None and meta.general_desc is not None:
            lengths.update(n for n in meta.general_desc.possible_length if n > 0)
    return sorted(lengths)


def _regions_under(code: int, prefix: str, lengths: list[int], rng: random.Random,
                   samples: int = SAMPLES) -> Counter[str]:
    seen: Counter[str] = Counter()
    for length in lengths:
        if length < len(prefix):
            continue
        for _ in range(samples if length > len(prefix) else 1):
            rest = "".join(rng.choice("0123456789") for _ in range(length - len(prefix)))
            num = phonenumbers.PhoneNumber(country_code=code, national_number=int(prefix + rest))
            if (prefix + rest).startswith("0"):
                num.italian_leading_zero = True
                zeros = len(prefix + rest) - len((prefix + rest).lstrip("0"))
                if zeros > 1:
                    num.number_of_leading_zeros = zeros
            region = phonenumbers.region_code_for_number(num)
            if region:
                seen[region] += 1
    return seen


def shared_prefixes(code: int, regions: list[str], rng: random.Random) -> dict[str, str]:
    """``{E.164 digits prefix: region}`` for a calling code shared by ``regions``."""
    lengths = _lengths(code, regions)
    out: dict[str, str] = {}

    def visit(prefix: str) -> None:
        seen = _regions_under(code, prefix, lengths, rng)
        if not seen and len(prefix) >= MIN_DEPTH.get(code, MIN_DEPTH_OTHERS):
            return
        if len(prefix) < MIN_DEPTH.get(code, MIN_DEPTH_OTHERS):
            for digit in "0123456789":
                visit(prefix + digit)
            return
        if len(seen) == 1:
            seen += _regions_under(code, prefix, lengths, rng, CONFIRM)
        if len(seen) == 1:
            out[f"{code}{prefix}"] = next(iter(seen))
            return
        if len(prefix) >= DEPTH:
            return  # still split this deep: left out, so such calls get '' (unknown), never a guess
        for digit in "0123456789":
            visit(prefix + digit)

    for digit in "0123456789":
        visit(digit)
    return out


def table() -> dict[str, str]:
    """The whole table: every geographic calling code, shared ones split by prefix."""
    rng = random.Random(10)  # migration 10
    out: dict[str, str] = {}
    for code, regions in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()):
        geographic = [r for r in regions if r.isalpha() and len(r) == 2 and r != "ZZ"]
        if not geographic:
            continue
        if len(regions) == 1:
            out[str(code)] = geographic[0]
        else:
            out.update(shared_prefixes(code, geographic, rng))
    return _merge(out)


def _merge(prefixes: dict[str, str]) -> dict[str, str]:
    """Fold ten sibling prefixes with one region into their parent, repeatedly (a shorter table, same answers)."""
    changed = True
    while changed:
        changed = False
        parents = Counter(p[:-1] for p in prefixes if len(p) > 1)
        for parent, n in parents.items():
            kids = [parent + d for d in "0123456789"]
            if n == 10 and parent not in prefixes and len({prefixes.get(k) for k in kids}) == 1 \
                    and all(k in prefixes for k in kids):
                region = prefixes[kids[0]]
                for k in kids:
                    del prefixes[k]
                prefixes[parent] = region
                changed = True
    return dict(sorted(prefixes.items()))


def main() -> None:
    print(f"# phonenumbers {phonenumbers.__version__}")
    for prefix, region in table().items():
        print(f"{prefix} {region}")


if __name__ == "__main__":
    main()
