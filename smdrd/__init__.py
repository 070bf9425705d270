"""smdrd: a call-accounting daemon for office PBXs.

It collects SMDR/CDR lines over TCP, serial or files, journals every line in SQLite before parsing it,
parses each with a vendor plugin into one canonical `CallRecord`, rates it, and reports, exports metrics
and raises alerts.
"""

from smdrd.errors import ConfigError, ParseError, SmdrdError
from smdrd.parsing import Parser, ParserContext
from smdrd.record import CallRecord, Direction

__version__ = "0.1.0"

__all__ = [
    "CallRecord",
    "ConfigError",
    "Direction",
    "ParseError",
    "Parser",
    "ParserContext",
    "SmdrdError",
    "__version__",
]
