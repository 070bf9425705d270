"""The day/month order of PBX dates that follow the country's custom (``02/11/11``): never a silent guess.
No I/O here.

Some PBXs print ``MM/DD`` or ``DD/MM`` as their country setting says (Panasonic, Avaya CM) and nothing in a line
tells which. `DateOrder` reads them in the order the format option gives (``date_order = "mdy"`` or
``"dmy"``); otherwise (``"auto"``) the first date with a day above 12 decides, and a first date that cannot
(``02/11/11``) takes the order of the site's country (`MDY_COUNTRIES` write the month first). Once chosen the
order holds for the stream, so a later date it cannot read is a `ParseError` naming the option, never a quiet
swap; with no option, no deciding date and no country a date is `smdrd.parsing.Undecided`.
"""

from __future__ import annotations

from smdrd.errors import ParseError
from smdrd.parsing import Choice, Undecided

#: countries that write the month first (the US and the territories on its numbering plan, Canada, the
#: Philippines); every other country writes the day first.
MDY_COUNTRIES = frozenset({"US", "CA", "PH", "PR", "GU", "VI", "AS", "MP", "UM"})
ORDERS = ("auto", "mdy", "dmy")
WORDS = {"mdy": "month/day", "dmy": "day/month"}


def country_order(country: str) -> str:
    """The order a country writes dates in: ``"mdy"`` or ``"dmy"``."""
    return "mdy" if country.upper() in MDY_COUNTRIES else "dmy"


class DateOrder:
    """How one stream's dates are read (see the module).

    Args:
        format: the format name its errors carry.
        option: the format option's value (``"auto"``, ``"mdy"`` or ``"dmy"``, any case).
        country: the site's ISO country code, or ``None``.
        name: the option's name, as errors and `choice` name it.

    Raises:
        ValueError: ``option`` is none of `ORDERS`.
    """

    def __init__(self, format: str, option: object = "auto", country: str | None = None, *,
                 name: str = "date_order") -> None:
        value = str(option).lower()
        if value not in ORDERS:
            raise ValueError(f"{format} option {name!r} must be one of {', '.join(ORDERS)}, not {option!r}")
        self.format = format
        self.name = name
        self.country = country.upper() if country else None
        #: the order dates are read in once chosen (``None`` before), and why.
        self.order: str | None = None if value == "auto" else value
        self.reason = f'set by the option ({name} = "{value}")' if self.order else ""

    def month_day(self, date: str, first: int, second: int) -> tuple[int, int]:
        """The (month, day) of ``date``, whose first two numbers are ``first`` and ``second``; the first date
        that decides the order (or, if it cannot, the country) fixes it for the stream.

        Raises:
            ParseError: ``date`` cannot be read in the chosen order (field ``date``; names the option).
            Undecided: nothing decides the order yet.
        """
        if first > 12 and second > 12:
            raise ParseError(self.format, f"{date} is no date in either order (no month {min(first, second)})",
                             "date")
        if self.order is None:
            if 12 < first <= 31 and 1 <= second <= 12:
                self.order, self.reason = "dmy", f"decided by the data: {date} has no month {first}"
            elif 12 < second <= 31 and 1 <= first <= 12:
                self.order, self.reason = "mdy", f"decided by the data: {date} has no month {second}"
            elif self.country:
                self.order = country_order(self.country)
                self.reason = (f"from the site's country {self.country} ({date} does not decide it; set "
                               f"{self.name} if the PBX prints otherwise)")
            else:
                raise Undecided(self.format, f"{date} reads as month/day or as day/month and nothing decides "
                                             f"which (no day above 12 yet, no site country): set the format "
                                             f'option {self.name} = "mdy" or "dmy", or give the site\'s country',
                              "date")
        month, day = (first, second) if self.order == "mdy" else (second, first)
        if month > 12:
            other = "dmy" if self.order == "mdy" else "mdy"
            raise ParseError(self.format, f"{date} is not a {WORDS[self.order]} date (no month {month}): the "
                                          f"order was {self.reason}; if the PBX prints {WORDS[other]}, set the "
                                          f'format option {self.name} = "{other}"', "date")
        return month, day

    def describe(self) -> str:
        """The order for an error message: ``"month/day, decided by the data: ..."``."""
        return f"{WORDS[self.order]}, {self.reason}" if self.order else "undecided"

    def choice(self) -> Choice:
        """What `smdrd.parsing.Parser.choices` reports."""
        if self.order is not None:
            return Choice(self.name, self.order, self.reason)
        then = (f"else the site's country {self.country}: {country_order(self.country)}" if self.country
                else f"and nothing else decides it (no site country): set {self.name}")
        return Choice(self.name, "", f"auto: the first date with a day above 12 decides, {then}")
