"""Reassembly of concatenated MOs. Pure: the caller passes the time in."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.mo import ConcatKey


@dataclass(slots=True)
class Group:
    key: ConcatKey
    total: int
    data_coding: int
    first_at: float
    parts: dict[int, bytes] = field(default_factory=dict)
    # `mo_parts.concat_key` values of its rows other than `key.stored()` (rows written
    # before the keys were digests): closed with the group.
    aliases: set[str] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return len(self.parts) >= self.total

    @property
    def size(self) -> int:
        return sum(map(len, self.parts.values()))

    def bodies(self) -> list[bytes]:
        return [self.parts[i] for i in sorted(self.parts)]

    def missing(self) -> list[int]:
        return [i for i in range(1, self.total + 1) if i not in self.parts]


class Reassembler:
    """Collects parts per concat key (bind + source + destination + reference); a group
    completes when every sequence number 1..total is present. Duplicate parts are
    ignored; order does not matter.

    Memory is capped: beyond `max_groups` open groups or `max_bytes` of part bodies,
    `over_cap` hands out the oldest groups, to be delivered incomplete as on a timeout
    (a person's message is delivered late and partial, never dropped)."""

    def __init__(self, *, max_groups: int = 0, max_bytes: int = 0) -> None:
        self.groups: dict[ConcatKey, Group] = {}  # in order of first part
        self.max_groups = max_groups  # 0: no cap
        self.max_bytes = max_bytes
        self.bytes = 0  # bodies held in every open group
        self.evictions = 0  # groups handed out by `over_cap`

    def add(self, key: ConcatKey, total: int, seq: int, body: bytes, data_coding: int,
            now: float) -> tuple[Group | None, bool]:
        """(the completed group or None, whether the part was new)."""
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key, total, data_coding, now)
        if seq in group.parts:
            return None, False
        group.parts[seq] = body
        self.bytes += len(body)
        if group.complete:
            self._remove(group)
            return group, True
        return None, True

    def over_cap(self) -> list[Group]:
        """Remove and return the oldest groups until both caps hold again."""
        out: list[Group] = []
        groups = self.groups
        while groups and ((self.max_groups and len(groups) > self.max_groups)
                          or (self.max_bytes and self.bytes > self.max_bytes)):
            out.append(self._remove(next(iter(groups.values()))))
        self.evictions += len(out)
        return out

    def expired(self, now: float, timeout: float) -> list[Group]:
        """Remove and return the groups whose first part is older than `timeout`."""
        old = [g for g in self.groups.values() if now - g.first_at >= timeout]
        for g in old:
            self._remove(g)
        return old

    def restore(self, group: Group) -> None:
        """Put back a group removed by a batch whose commit failed."""
        if group.key not in self.groups:
            self.groups[group.key] = group
            self.bytes += group.size

    def forget_part(self, key: ConcatKey, seq: int) -> None:
        """Undo `add` of one part (its commit failed)."""
        group = self.groups.get(key)
        if group is None:
            return
        body = group.parts.pop(seq, None)
        if body is not None:
            self.bytes -= len(body)
        if not group.parts:
            del self.groups[key]

    def _remove(self, group: Group) -> Group:
        del self.groups[group.key]
        self.bytes -= group.size
        return group

    def __len__(self) -> int:
        return len(self.groups)
