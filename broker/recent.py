"""The most recently used values of a node's own caches, bounded: the least recently used go first.

Each cache that keeps what it read per therapist (`broker.bookable`, `broker.therapists.BySlug`)
keeps it here, so how many entries a node holds and which go first is decided in one place."""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    """At most `entries` values by key; reading or writing one makes it the most recent."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._values: collections.OrderedDict[K, V] = collections.OrderedDict()

    def get(self, key: K) -> V | None:
        found = self._values.get(key)
        if found is not None:
            self._values.move_to_end(key)
        return found

    def put(self, key: K, value: V) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self.entries:
            self._values.popitem(last=False)

    def drop(self, key: K) -> None:
        self._values.pop(key, None)

    def __len__(self) -> int:
        return len(self._values)
