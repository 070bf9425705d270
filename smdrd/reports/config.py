"""The ``[[departments]]`` section: departments, their extensions and memberships, parents and budgets.

`smdrd.config` composes it into `~smdrd.config.Settings`; the checks across departments (unique names, known
parents, no cycles, no ties) are `smdrd.reports.departments.department_problems`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from smdrd.rating.config import Money
from smdrd.section import Section, ascii_digits

__all__ = ["UNASSIGNED", "DepartmentConfig", "DirectoryConfig", "ExtensionSpec", "MembershipConfig"]


#: the name reports give calls from extensions that belong to no department (so none is silently dropped).
UNASSIGNED = "Unassigned"


def _extension_spec(value: Any) -> Any:
    """An extension (``201``, ``"201"``, ``"SIP/alice"``) or an inclusive numeric range (``"200-299"``)."""
    if isinstance(value, bool):
        raise ValueError(f"expected an extension such as \"201\" or a range such as \"200-299\", got {value!r}")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected an extension such as \"201\" or a range such as \"200-299\", got {value!r}")
    value = value.strip()
    if len(value) > 64 or not value.isprintable():
        raise ValueError(f"expected an extension of at most 64 characters and no control characters, got "
                         f"{value[:40]!r}")
    lo, sep, hi = value.partition("-")
    if sep and ascii_digits(lo.strip()) and ascii_digits(hi.strip()):
        if int(lo) > int(hi):
            raise ValueError(f"range {value!r} runs backwards; expected LOW-HIGH such as 200-299")
        return f"{int(lo)}-{int(hi)}"
    return value


#: one extension or an inclusive range of numeric extensions, as written in ``[[departments]]``.
ExtensionSpec = Annotated[str, BeforeValidator(_extension_spec)]


class MembershipConfig(Section):
    """Extensions that belong to a department for a while (``[[departments.members]]``): both dates inclusive,
    in the site's timezone; a missing date is open-ended. An extension that moves mid-month gets a membership
    with ``valid_from`` in its new department, so each day is billed to the department it was in that day.
    ``site`` names the site whose extensions they are, in a store of several sites (extension 201 of one site is
    not 201 of another); without one, they are the extensions of every site."""

    extensions: list[ExtensionSpec] = Field(min_length=1)
    valid_from: date | None = None
    valid_until: date | None = None
    #: the site whose extensions these are (``[site] name``, a central store's sites); ``""``: every site.
    site: str = Field(default="", max_length=100)

    @field_validator("site")
    @classmethod
    def _site_name(cls, v: str) -> str:
        return v.strip()

    @model_validator(mode="after")
    def _dates_in_order(self) -> MembershipConfig:
        if self.valid_from and self.valid_until and self.valid_from > self.valid_until:
            raise ValueError(f"valid_until ({self.valid_until}) is before valid_from ({self.valid_from})")
        return self


class DepartmentConfig(Section):
    """A department (``[[departments]]``): its extensions, an optional parent it rolls up into, an optional
    monthly budget. ``extensions`` always belong to it; ``members`` add extensions for a period.
    Which department wins when memberships overlap is in docs/reports.md (the narrowest, then the latest)."""

    name: str = Field(min_length=1, max_length=100)
    extensions: list[ExtensionSpec] = Field(default_factory=list)
    members: list[MembershipConfig] = Field(default_factory=list)
    parent: str | None = None
    budget: Money | None = None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v.strip().casefold() == UNASSIGNED.casefold():
            raise ValueError(f"{UNASSIGNED!r} is the name reports give extensions in no department; "
                             "choose another name")
        return v.strip()


class DirectoryConfig(Section):
    """Where departments and memberships come from (``[directory]``): ``files`` (``[[departments]]`` in this
    file, the default) or ``database`` (edited in the console, ``smdrd directory import``; see docs/reports.md).
    Extension names are kept in the database either way."""

    source: Literal["files", "database"] = "files"
