"""The longest-prefix structure a compiled tariff matches numbers with.

Pure: no I/O here. A dict from prefix to its entries, probed from the longest prefix length present down to
the shortest: a handful of dict look-ups a number, whatever the size of the deck, and far less memory than a
node-per-digit trie for a deck of 100,000 prefixes. Immutable once built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["PrefixTable"]

T = TypeVar("T")


class PrefixTable(Generic[T]):
    """Entries grouped by prefix; look-ups give the prefixes of a key, longest first.

    Args:
        entries: ``(prefix, entry)`` pairs; several entries may share a prefix.
        sort_key: orders the entries of one prefix (stable: equal keys keep their input order).
    """

    __slots__ = ("_by_prefix", "_lengths")

    def __init__(
        self, entries: Iterable[tuple[str, T]], sort_key: Callable[[T], Any] | None = None
    ) -> None:
        grouped: dict[str, list[T]] = {}
        for prefix, entry in entries:
            bucket = grouped.get(prefix)
            if bucket is None:
                grouped[prefix] = [entry]
            else:
                bucket.append(entry)
        by_prefix: dict[str, tuple[T, ...]] = {}
        for prefix, bucket in grouped.items():
            if sort_key is not None and len(bucket) > 1:
                bucket.sort(key=sort_key)
            by_prefix[prefix] = tuple(bucket)
        self._by_prefix = by_prefix
        self._lengths = tuple(sorted({len(p) for p in by_prefix}, reverse=True))

    def __len__(self) -> int:
        """The number of distinct prefixes."""
        return len(self._by_prefix)

    def __contains__(self, prefix: object) -> bool:
        return prefix in self._by_prefix

    def matches(self, key: str) -> Iterator[tuple[str, tuple[T, ...]]]:
        """Every prefix of ``key`` in the table with its entries, the longest first."""
        by_prefix = self._by_prefix
        size = len(key)
        for length in self._lengths:
            if length <= size:
                prefix = key[:length]
                bucket = by_prefix.get(prefix)
                if bucket is not None:
                    yield prefix, bucket

    def longest(self, key: str) -> tuple[str, tuple[T, ...]] | None:
        """The longest prefix of ``key`` in the table with its entries, or ``None``."""
        by_prefix = self._by_prefix
        size = len(key)
        for length in self._lengths:
            if length <= size:
                prefix = key[:length]
                bucket = by_prefix.get(prefix)
                if bucket is not None:
                    return prefix, bucket
        return None
