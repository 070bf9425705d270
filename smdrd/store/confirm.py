"""The confirmed point of a site's journal feed at the central store: how far, in the site's journal order, the
central store holds every entry the site published (`smdrd.store.postgres.central` keeps it per site, in the
transaction of the entries it stores; `smdrd.mqtt.Publisher` rewinds its cursor to it when it stalls).

Each journal payload carries ``prev``: the position (journal id) of the entry the site's feed read just before
it, or its cursor for the first of a window. So an entry whose ``prev`` is at or below the point, and that is the
next stored entry above the point, follows on from it: nothing of the site's journal lies between them. The
point moves over such entries, one after the other, and stops at a gap (an entry the central store never got).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["advance"]


def advance(point: int, links: Iterable[tuple[int, int]]) -> int:
    """The confirmed ``point`` moved over ``links`` ((position, prev) of stored entries above it, in position
    order): while the next one's ``prev`` is at or below the point, the point becomes its position."""
    for position, prev in links:
        if position <= point:
            continue
        if prev > point:
            break
        point = position
    return point
