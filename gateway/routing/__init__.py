"""Keyword routing: pure code that turns an MO and the configuration into a `Decision`."""

from gateway.routing.router import Decision, Route, Router
from gateway.routing.trie import KeywordTrie, normalize_head, normalize_text

__all__ = ["Decision", "KeywordTrie", "Route", "Router", "normalize_head", "normalize_text"]
