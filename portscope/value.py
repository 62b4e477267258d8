"""Small immutable value types without the dataclasses module.

`import dataclasses` pulls in inspect, and with it ast, dis, tokenize, re and enum: more than
an empty interpreter's whole start-up, paid by every command whose path builds one. The
types on that path (ports.PortRange, host.HostFacts, portinfo.PortFacts, ...) derive from
`Frozen` instead: each writes its own typed __init__ and lists its fields in __slots__, in
the order __init__ takes them; `Frozen` gives them what `@dataclass(frozen=True)` gave:

* equality and hashing over the fields (those in `_uncompared` left out), only between
  instances of the same class;
* assignment and deletion raise FrozenError (an AttributeError, as dataclasses'
  FrozenInstanceError is);
* a repr `Name(field=value, ...)` over every field;
* `replace(**changes)`, a copy with some fields changed (through __init__, so checks run
  again), also as `__replace__` for copy.replace on Python 3.13+;
* copy, deepcopy and pickle, by rebuilding through __init__.
"""
from __future__ import annotations

TYPE_CHECKING = False     # typing's would import typing
if TYPE_CHECKING:
    from typing import Any, TypeVar

    V = TypeVar("V", bound="Frozen")

_set = object.__setattr__


class FrozenError(AttributeError):
    """Raised on assigning to (or deleting) a field of a frozen value."""


class Frozen:
    """Base of the frozen value types: subclasses set __slots__ (their fields, in __init__'s
    order) and fill them in __init__ through `_init`."""

    __slots__: tuple[str, ...] = ()
    _uncompared: tuple[str, ...] = ()      # fields equality and hashing ignore (e.g. provenance)

    def _init(self, **values: Any) -> None:
        for name, value in values.items():
            _set(self, name, value)

    def _key(self) -> tuple:
        skip = self._uncompared
        return tuple(getattr(self, n) for n in self.__slots__ if n not in skip)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{self.__class__.__qualname__}({fields})"

    def fields(self) -> dict[str, Any]:
        """Every field's name and value, in declaration order."""
        return {n: getattr(self, n) for n in self.__slots__}

    def replace(self: V, **changes: Any) -> V:
        """A copy with `changes` (field=value) applied; TypeError for a name that is no field."""
        unknown = set(changes) - set(self.__slots__)
        if unknown:
            raise TypeError(f"{self.__class__.__name__} has no field {sorted(unknown)[0]!r}")
        return self.__class__(**{**self.fields(), **changes})

    __replace__ = replace

    def __reduce__(self) -> tuple:
        return (self.__class__, tuple(getattr(self, n) for n in self.__slots__))
