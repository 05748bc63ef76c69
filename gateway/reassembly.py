"""Reassembly of concatenated MOs. Pure: the caller passes the time in."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Group:
    key: str
    total: int
    data_coding: int
    first_at: float
    parts: dict[int, bytes] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.parts) >= self.total

    def bodies(self) -> list[bytes]:
        return [self.parts[i] for i in sorted(self.parts)]

    def missing(self) -> list[int]:
        return [i for i in range(1, self.total + 1) if i not in self.parts]


class Reassembler:
    """Collects parts per concat key (bind + source + destination + reference); a group
    completes when every sequence number 1..total is present. Duplicate parts are
    ignored; order does not matter."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}

    def add(self, key: str, total: int, seq: int, body: bytes, data_coding: int,
            now: float) -> tuple[Group | None, bool]:
        """(the completed group or None, whether the part was new)."""
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key, total, data_coding, now)
        if seq in group.parts:
            return None, False
        group.parts[seq] = body
        if group.complete:
            del self.groups[key]
            return group, True
        return None, True

    def expired(self, now: float, timeout: float) -> list[Group]:
        """Remove and return the groups whose first part is older than `timeout`."""
        old = [g for g in self.groups.values() if now - g.first_at >= timeout]
        for g in old:
            del self.groups[g.key]
        return old

    def __len__(self) -> int:
        return len(self.groups)
