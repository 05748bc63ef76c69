"""Compiled keyword matcher over normalized text (pure: no IO, no config types).

Text and keywords are compared in one form, `normalize_text`: case-folded, every
whitespace run collapsed to one space, trimmed. A keyword matches a text when it is
a prefix of the text followed by the end of the text or a boundary character
(anything that is not alphanumeric, unicode-aware: space, "!", ",", "-", an emoji),
or, for an *exact* keyword, when it equals the whole text. The longest match wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["KeywordTrie", "normalize_head", "normalize_text"]

V = TypeVar("V")

# normalize_head normalizes at most this many leading characters when that is enough.
_HEAD_CHARS = 96


def normalize_text(s: str) -> str:
    """Case-folded, whitespace runs collapsed to one space, trimmed.

    The same form as `gateway.config.normalize_keyword`, so configured keywords and
    incoming texts compare equal exactly when they should.
    """
    return " ".join(s.casefold().split())


def normalize_head(s: str, limit: int) -> str:
    """`normalize_text(s)`, or a prefix of it that is longer than `limit` characters.

    Matching never looks further than one character past the longest keyword, and a
    normalized text longer than every keyword cannot equal one, so a long message
    (up to a few thousand characters once reassembled) only needs its head normalized.
    """
    if len(s) > _HEAD_CHARS and limit < _HEAD_CHARS // 2:
        # normalize_text(s[:n]) is always a prefix of normalize_text(s): casefolding
        # is per character and a cut inside a word or a whitespace run only drops
        # what follows.
        head = " ".join(s[:_HEAD_CHARS].casefold().split())
        if len(head) > limit:
            return head
    return " ".join(s.casefold().split())


class KeywordTrie(Generic[V]):
    """Longest-keyword matcher; despite the name, not a character trie.

    It is a hash map ``{normalized keyword: (value, exact)}`` plus, per first
    character, the distinct lengths of the keywords that start with it, longest
    first. `longest_match` takes the lengths for the text's first character and, for
    each length L, checks the boundary character ``text[L]`` and, only if that is not
    alphanumeric, looks up ``text[:L]``: at most one slice and one dict lookup per
    distinct length (keywords are at most 30 characters), whatever the number of
    keywords, and a text whose first character starts no keyword costs one lookup.
    A dict-of-dicts character trie measured about as fast to match, but 10 times
    slower to build and 10 times larger (100k keywords over 10k VMNs).

    Built from ``(keyword, value)`` pairs, keywords normalized here (idempotent, so
    already-normalized ones are fine); aliases are more pairs with the same value.
    ``exact(value)`` says whether a keyword must equal the whole text (default: never,
    i.e. every keyword is matched as the first word(s)). An empty keyword, or two that
    normalize alike, is a ValueError.
    """

    __slots__ = ("_entries", "_lengths_by_first", "max_length")

    def __init__(
        self,
        pairs: Iterable[tuple[str, V]],
        *,
        exact: Callable[[V], bool] | None = None,
    ) -> None:
        # keyword -> (value, exact): one lookup answers both on a hit.
        entries: dict[str, tuple[V, bool]] = {}
        lengths: dict[str, set[int]] = {}
        for keyword, value in pairs:
            key = normalize_text(keyword)
            if not key:
                raise ValueError(f"empty keyword {keyword!r}")
            if key in entries:
                raise ValueError(f"keyword {keyword!r} given twice (as {key!r})")
            entries[key] = (value, exact is not None and exact(value))
            lengths.setdefault(key[0], set()).add(len(key))
        self._entries = entries
        self._lengths_by_first = {
            first: tuple(sorted(found, reverse=True)) for first, found in lengths.items()
        }
        self.max_length: int = max(map(len, entries), default=0)
        """The length of the longest keyword (0 when there is none)."""

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def longest_match(self, text_norm: str) -> tuple[V, int] | None:
        """The value of the longest keyword matching `text_norm`, and that keyword's length.

        `text_norm` must be in `normalize_text` form (or a `normalize_head` of it). A
        first-word keyword matches when it is a prefix followed by the end of the text
        or a non-alphanumeric character; an exact keyword only when it is the whole text.
        """
        lengths = self._lengths_by_first.get(text_norm[:1])
        if lengths is None:
            return None
        n = len(text_norm)
        entries = self._entries
        for length in lengths:
            if length < n:
                if text_norm[length].isalnum():
                    continue  # inside a word: "HELLOWORLD" is not "HELLO"
                entry = entries.get(text_norm[:length])
                if entry is not None and not entry[1]:
                    return entry[0], length
            elif length == n:
                entry = entries.get(text_norm)
                if entry is not None:
                    return entry[0], length
        return None
