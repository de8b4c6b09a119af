"""Small value classes without ``dataclasses``, for the start-up-bound commands.

Why: ``import dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``),
a large share of an ``imgscan mount``. A subclass lists its fields in order in ``_fields``
(and as its ``__slots__``) and writes its own typed ``__init__`` (so that mypy checks every
construction); this base gives what ``@dataclass`` would: equality and a repr over the
fields in order, a hash for frozen records, ``as_dict`` (``dataclasses.asdict`` for flat
records) and ``replace``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, Self


class PlainRecord:
    """Fields are the subclass's ``_fields``, in order. ``_frozen`` records refuse
    assignment after ``__init__`` (which sets fields with ``_init``) and are hashable."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _frozen: ClassVar[bool] = False

    def _init(self, **fields: object) -> None:
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, name: str, value: object) -> None:
        if self._frozen:
            raise AttributeError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self._fields}

    def replace(self, **changes: Any) -> Self:
        return type(self)(**{**self.as_dict(), **changes})

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        if not self._frozen:
            raise TypeError(f"unhashable type: {type(self).__name__!r}")
        return hash(self._values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(
            f"{f}={getattr(self, f)!r}" for f in self._fields) + ")"
