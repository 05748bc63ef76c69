"""Which MOs the SMSC may send again: the suspect keys. Pure: no IO, no clock.

A person who sends the same text twice sent two messages (SPEC §3 step 2); the content
hash alone is not identity. Only an SMSC redelivery is folded into the first copy: the
same PDU sent again because its deliver_sm_resp may not have reached the SMSC. The
session layer says which answers those are (still unanswered or in flight when the
connection dropped, or answered later than the SMSC's response timeout); their dedup
keys are kept here for `window` seconds, and each folds the first later PDU with the
same key, once.
"""

from __future__ import annotations

from collections import deque


class Fate:
    """Whether a batch's commit succeeded: None until it finished. Small on purpose: a
    suspect key keeps its original's, never the batch's rows."""

    __slots__ = ("ok",)

    def __init__(self, ok: bool | None = None) -> None:
        self.ok = ok


class Suspects:
    """Dedup keys of MOs whose answer may not have reached the SMSC, with the fate of
    the original (None: it is stored) and when each became suspect."""

    __slots__ = ("_order", "keys", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        # key -> (since, fate of the original). Read directly on the hot path: an empty
        # dict is the common case and costs one truth test per MO.
        self.keys: dict[str, tuple[float, Fate | None]] = {}
        self._order: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: str, since: float, origin: Fate | None = None) -> None:
        """Remember `key` as possibly redelivered from `since` on (0 window: never)."""
        if self.window <= 0:
            return
        self.prune(since)
        self.keys[key] = (since, origin)
        self._order.append((since, key))

    def take(self, key: str, now: float) -> tuple[bool, Fate | None]:
        """(True, fate of the original) when a PDU with `key` is a redelivery to fold;
        the key is then forgotten, so a later copy is a new message. An original whose
        commit failed was never stored: its redelivery is taken afresh."""
        entry = self.keys.pop(key, None)
        if entry is None:
            return False, None
        since, origin = entry
        if now - since > self.window or (origin is not None and origin.ok is False):
            return False, None
        return True, origin

    def prune(self, now: float) -> None:
        order, keys, horizon = self._order, self.keys, now - self.window
        while order and order[0][0] < horizon:
            since, key = order.popleft()
            entry = keys.get(key)
            if entry is not None and entry[0] == since:
                del keys[key]

    def clear(self) -> None:
        self.keys.clear()
        self._order.clear()

    def live(self, now: float) -> list[tuple[str, float]]:
        """(key, since) of every suspect still within the window whose original was not
        lost: what a graceful stop hands to the next start."""
        self.prune(now)
        return [(k, since) for k, (since, origin) in self.keys.items()
                if origin is None or origin.ok is not False]
