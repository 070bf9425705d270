"""A fast positional constructor for the frozen slots dataclasses of the hot path.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` by name, which costs about twice
as much as everything else the live path does to build a small record: the pipeline worker builds several such
objects a line (the rating, the alert rules' view of the call), and the daemon rebuilds the entries it receives.
`constructor` makes a function taking the fields in declaration order that sets them through the slots' own
descriptors instead: the same object, the same equality, the same fields, built in about half the time. It
runs no ``__post_init__`` and no default factories: every field is given.

Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["constructor"]

T = TypeVar("T")


def constructor(cls: type[T], name: str) -> Callable[..., T]:
    """A function ``name(field0, field1, ...)`` that returns an instance of the frozen slots dataclass ``cls``.

    The function claims to live in ``cls``' module under ``name``, so that ``__reduce__`` can return it and
    pickle finds it again: assign it to that name in that module.
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    params = ", ".join(f"a{i}" for i in range(len(names)))
    body = "".join(f"    s{i}(o, a{i})\n" for i in range(len(names)))
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls,
                             **{f"s{i}": cls.__dict__[n].__set__ for i, n in enumerate(names)}}
    exec(f"def {name}({params}):\n    o = new(cls)\n{body}    return o\n", scope)
    made: Callable[..., T] = scope[name]
    made.__module__ = cls.__module__
    made.__qualname__ = name
    made.__doc__ = f"A `{cls.__name__}` from its fields, in order (`smdrd.frozen.constructor`)."
    return made
