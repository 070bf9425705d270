"""Number masking (issue 15, point 2): the last digits of dialled numbers hidden from the people who need not see
them, wherever numbers reach people (the reports' pages, JSON and exports; the console's call pages).

``[privacy] mask_digits`` says how many of a number's last digits are hidden (``0``, the default, hides none:
every role sees every number, as before), ``unmasked_roles`` which roles still see numbers whole (``admin`` by
default; ``manager``, ``viewer`` and ``service``, the shared token, may be added). Pure: no I/O; the caller
passes who is asking (anything with a ``role``, such as `smdrd.http.Principal`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Protocol

from pydantic import Field, field_validator

from smdrd.section import Section

__all__ = ["MASK", "MASKABLE_ROLES", "MIN_NUMBER_RUN", "PrivacyConfig", "Role", "hidden_digits", "hide_codes", "mask",
           "mask_fields", "mask_number", "mask_text", "mask_within", "masked_payload", "seen_match", "visible_part"]

#: what a hidden digit is shown as.
MASK = "*"
#: the roles ``unmasked_roles`` may name: the console's and the shared token's.
MASKABLE_ROLES = ("admin", "manager", "viewer", "service")


class PrivacyConfig(Section):
    """``[privacy]``: how much of a dialled number people see."""

    #: how many of a number's last digits are hidden from the roles not in ``unmasked_roles`` (0: none).
    mask_digits: int = Field(default=0, ge=0, le=15)
    #: the roles that see numbers whole.
    unmasked_roles: list[str] = Field(default_factory=lambda: ["admin"], max_length=len(MASKABLE_ROLES))

    @field_validator("unmasked_roles")
    @classmethod
    def _roles(cls, v: list[str]) -> list[str]:
        for role in v:
            if role not in MASKABLE_ROLES:
                raise ValueError(f"expected roles among {', '.join(MASKABLE_ROLES)}, got {role[:40]!r}")
        return v


class _Someone(Protocol):
    @property
    def role(self) -> str: ...


class Role(NamedTuple):
    """Someone known only by their role (a mail's recipient, a schedule's owner): what `hidden_digits` reads."""

    role: str


def hidden_digits(who: _Someone | None, cfg: PrivacyConfig) -> int:
    """How many last digits ``who`` may not see (``None``, nobody known: the configured number, fail closed)."""
    if cfg.mask_digits == 0 or (who is not None and who.role in cfg.unmasked_roles):
        return 0
    return cfg.mask_digits


def mask(number: str, digits: int) -> str:
    """``number`` with its last ``digits`` digits (ASCII 0-9, counted from the end) replaced by `MASK`; any
    other character (``+``, spaces, ``#``) stays where it is. A number with fewer digits has them all hidden."""
    if digits <= 0 or not number:
        return number
    out = list(number)
    left = digits
    for i in range(len(out) - 1, -1, -1):
        if left == 0:
            break
        if "0" <= out[i] <= "9":
            out[i] = MASK
            left -= 1
    return "".join(out)


def visible_part(number: str, digits: int) -> str:
    """What someone who may not see ``number``'s last ``digits`` digits sees of it before the first hidden one
    (``0600123`` of ``0600123456`` for 3 digits; ``''`` for a number with no more digits than that)."""
    if digits <= 0:
        return number
    left = digits
    first_digit = len(number)
    for i in range(len(number) - 1, -1, -1):
        if "0" <= number[i] <= "9":
            first_digit = i
            left -= 1
            if left == 0:
                break
    return number[:first_digit]


def seen_match(number: str | None, term: str, digits: int) -> bool:
    """Whether a search for ``term`` finds ``number`` for someone who may not see its last ``digits`` digits,
    judged on what they see alone, so that no answer depends on a hidden digit: ``term`` within the visible
    part, or ``term`` ending where the number ends, its own last ``digits`` digits standing for the hidden ones
    (a whole number typed finds every number shown as its visible part followed by ``***``, whatever the hidden
    digits are)."""
    if not number or not term:
        return False
    seen = visible_part(number, digits)
    if term in seen:
        return True
    typed = sum("0" <= c <= "9" for c in term)
    return typed > digits and seen.endswith(visible_part(term, digits))


def mask_within(text: str, numbers: Iterable[str | None], digits: int) -> str:
    """``text`` (an alert's reason, a raw PBX line) with every occurrence of each of ``numbers`` masked as `mask`
    masks it; a ``+`` in front of a number is not needed for it to be found (the longest numbers first)."""
    if digits <= 0 or not text:
        return text
    found = {n for number in numbers if number for n in (number, number.lstrip("+")) if n}
    for number in sorted(found, key=len, reverse=True):
        text = text.replace(number, mask(number, digits))
    return text


#: a run of this many digits or more, in text that is not a number field (a raw PBX line, a vendor field, a call
#: key), is taken for a phone number: longer than any extension (`internal_max_digits` is 5 by default).
MIN_NUMBER_RUN = 6
#: a maximal run of `MIN_NUMBER_RUN` ASCII digits not already ending in `MASK` (`mask_within` masked it).
_NUMBER_RUN = re.compile(rf"(?<![0-9])[0-9]{{{MIN_NUMBER_RUN},}}(?![0-9{re.escape(MASK)}])")


def mask_text(text: str, numbers: Iterable[str | None], digits: int) -> str:
    """Free text someone who may not see a number's last ``digits`` digits is shown (a raw PBX line, a vendor
    field, a call key): each of ``numbers`` masked (`mask_within`), then every other run of `MIN_NUMBER_RUN` or
    more digits, which may be another party's number (a caller id, a transfer target) that no column names."""
    if digits <= 0 or not text:
        return text
    text = mask_within(text, numbers, digits)
    return _NUMBER_RUN.sub(lambda m: mask(m.group(), digits), text)


def mask_fields(fields: Mapping[str, object], numbers: Iterable[str | None], digits: int) -> dict[str, object]:
    """A call's vendor fields (``extra``) with every text value masked as `mask_text` masks it."""
    found = list(numbers)
    return {k: mask_text(v, found, digits) if isinstance(v, str) else v for k, v in fields.items()}


def hide_codes(raw: bytes, codes: Iterable[str]) -> bytes:
    """``raw`` (a journal line) with each of ``codes`` (its calls' authorisation codes: credentials, shown to
    nobody) replaced by as many `MASK`es: where it stands as a field of its own (not inside a longer word or
    number), else, in a layout whose columns touch, wherever it occurs (a code of 4 characters or more: a
    shorter one would take every such digit of the line with it). The longest codes first."""
    for code in sorted({c for c in codes if c}, key=len, reverse=True):
        needle = code.encode("utf-8", errors="replace")
        hidden = MASK.encode() * len(needle)
        raw, n = re.subn(rb"(?<![0-9A-Za-z])" + re.escape(needle) + rb"(?![0-9A-Za-z])", hidden, raw)
        if n == 0 and len(needle) >= 4:
            raw = raw.replace(needle, hidden)
    return raw


def mask_number(number: str, who: _Someone | None, cfg: PrivacyConfig) -> str:
    """``number`` as ``who`` may see it under ``cfg``."""
    return mask(number, hidden_digits(who, cfg))


def masked_payload(payload: dict[str, Any], hidden: int) -> dict[str, Any]:
    """An alert's payload (the inbox, the overview, an alert e-mail) with ``hidden`` last digits of its numbers
    masked: the number, the call's number and E.164 form, and the reason's text (`mask_text`: the number as
    the rule wrote it, separators left out, or any other long run of digits)."""
    if not hidden:
        return payload
    out = dict(payload)
    if isinstance(out.get("number"), str):
        out["number"] = mask(out["number"], hidden)
    call = out.get("call")
    numbers = [payload.get("number")]
    if isinstance(call, dict):
        out["call"] = {k: mask(v, hidden) if k in ("number", "e164") and isinstance(v, str) else v
                       for k, v in call.items()}
        numbers += [call.get("number"), call.get("e164")]
    found = [n for n in numbers if isinstance(n, str)]
    found += ["".join(c for c in n if c.isdigit()) for n in found]  # as a rule writes it without separators
    if isinstance(out.get("reason"), str):
        out["reason"] = mask_text(out["reason"], found, hidden)
    return out
