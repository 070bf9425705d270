"""The call classes a rating can give: plain strings, so they store and print as themselves.

Pure: no I/O here.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "CALL_CLASSES",
    "EMERGENCY",
    "INTERNAL",
    "INTERNATIONAL",
    "LOCAL",
    "MOBILE",
    "NATIONAL",
    "PREMIUM",
    "SPECIAL",
    "TOLL_FREE",
    "UNKNOWN",
    "CallClass",
]

CallClass = Literal[
    "internal", "local", "national", "mobile", "international", "toll-free", "premium", "emergency",
    "special", "unknown",
]

INTERNAL: Final = "internal"
LOCAL: Final = "local"
NATIONAL: Final = "national"
MOBILE: Final = "mobile"
INTERNATIONAL: Final = "international"
TOLL_FREE: Final = "toll-free"
PREMIUM: Final = "premium"
EMERGENCY: Final = "emergency"
SPECIAL: Final = "special"
UNKNOWN: Final = "unknown"

#: every class, in the order reports list them.
CALL_CLASSES: Final = (
    INTERNAL, LOCAL, NATIONAL, MOBILE, INTERNATIONAL, TOLL_FREE, PREMIUM, EMERGENCY, SPECIAL, UNKNOWN,
)
