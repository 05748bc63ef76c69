"""Building frozen, slotted dataclasses fast on the hot paths (the codec's PDUs and
TLVs, the router's `Decision`).

A frozen dataclass's `__init__` sets each field through `object.__setattr__`: for the
20 fields of a deliver_sm that is several times the cost of parsing it. Creating the
instance with `object.__new__` and writing each slot through its member descriptor
gives an equal object (same fields, same eq/hash/repr) in a third of the time. It is
only valid while the class has no `__post_init__` and exactly the fields the caller
fills, which `slot_setters` checks when the module that uses it is imported.

    set_a, set_b = slot_setters(Point, ("a", "b"))
    p = new_object(Point); set_a(p, 1); set_b(p, 2)   # == Point(a=1, b=2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

__all__ = ["Setter", "new_object", "slot_setters"]

Setter = Callable[[object, object], None]

new_object = object.__new__


def slot_setters(cls: type[object], names: tuple[str, ...]) -> tuple[Setter, ...]:
    """One setter per field of the slotted dataclass `cls`, in the order of `names`,
    which must be all its fields in declaration order (else RuntimeError)."""
    actual = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    if actual != names or hasattr(cls, "__post_init__"):
        raise RuntimeError(f"{cls.__name__} fields changed: {actual} != {names}")
    setters: list[Setter] = []
    for name in names:
        for klass in cls.__mro__:
            descriptor = klass.__dict__.get(name)
            if descriptor is not None:
                setters.append(descriptor.__set__)
                break
    return tuple(setters)
