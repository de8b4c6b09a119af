"""Refuse regexes that can backtrack catastrophically, before they ever see a file.

Python's ``re`` has no timeout, so a hostile or careless user rule such as ``(a+)+$`` could
hang a scan on one crafted line. Two shapes cause almost all super-linear backtracking, and
both are visible in the parsed pattern:

* nested unbounded repeats (``(a+)+``, ``(\\w+\\s?)*``) and unbounded repeats of an
  alternation (``(a|ab)*``): exponential;
* two unbounded repeats in sequence that can match the same character with nothing required
  between them (``\\w*\\w*``, ``\\s*"?\\s*``): polynomial, one degree per repeat.

The engine also runs regexes only on bounded windows around keyword hits, so what slips past
this check is still bounded by the window size.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

# CPython's own regex parser (private modules without type stubs)
C = importlib.import_module("re._constants")
P = importlib.import_module("re._parser")

#: a bounded repeat above this many iterations is treated as unbounded
LARGE = 1000

_REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", C.MAX_REPEAT))


class ReDoSError(ValueError):
    """The pattern has a shape that can backtrack catastrophically."""


def check_pattern(pattern: str) -> None:
    """Raise ``ReDoSError`` naming the dangerous construct; ``re.error`` if it is invalid."""
    tree = P.parse(pattern)
    _walk(tree, inside_unbounded=False)


def _is_unbounded(av: Any) -> bool:
    _min, mx, _sub = av
    return mx == C.MAXREPEAT or mx > LARGE


def _walk(seq: Any, inside_unbounded: bool) -> None:
    items = list(seq)
    for op, av in items:
        if op in _REPEATS:
            unb = _is_unbounded(av)
            if unb and inside_unbounded and _can_repeat_nonempty(av[2]):
                raise ReDoSError("nested unbounded quantifiers (like (a+)+) can backtrack "
                                 "exponentially; rewrite with a bounded or single quantifier")
            if unb and _has_branch(av[2]):
                raise ReDoSError("an unbounded quantifier over an alternation (like (a|ab)*) "
                                 "can backtrack exponentially; use a character class")
            _walk(av[2], inside_unbounded or unb)
        elif op == C.SUBPATTERN:
            _walk(av[-1], inside_unbounded)
        elif op == C.BRANCH:
            for alt in av[1]:
                _walk(alt, inside_unbounded)
        elif op in (C.ASSERT, C.ASSERT_NOT):
            _walk(av[1], inside_unbounded)
        elif op == getattr(C, "ATOMIC_GROUP", None):
            _walk(av, inside_unbounded)
    _check_adjacent(items)


def _can_repeat_nonempty(sub: Any) -> bool:
    """A repeat inside a repeat matters only when it can itself consume characters."""
    return any(op not in (C.AT,) for op, _av in sub)


def _has_branch(sub: Any) -> bool:
    for op, av in sub:
        if op == C.BRANCH:
            alts = av[1]
            # (?:a|b|c)* over single characters is just a class: harmless
            if not all(_single_char_set(a) is not None for a in alts):
                return True
        elif op == C.SUBPATTERN and _has_branch(av[-1]):
            return True
    return False


def _check_adjacent(items: list[Any]) -> None:
    """Two unbounded single-character repeats with only optional items between them,
    whose character sets overlap, make matching polynomial in the run length."""
    prev: set[int] | None = None
    for op, av in items:
        if op in _REPEATS:
            chars = _single_char_set(list(av[2]))
            if _is_unbounded(av) and chars is not None:
                if prev is not None and prev & chars:
                    raise ReDoSError("adjacent unbounded quantifiers over overlapping "
                                     "characters (like \\s*\\s*) backtrack polynomially; "
                                     "bound one of them ({0,N})")
                prev = chars
                continue
            if av[0] == 0:
                continue  # an optional item does not separate two repeats
            prev = None
        elif op != C.AT:
            prev = None


_ALL = range(256)


def _single_char_set(sub: Any) -> set[int] | None:
    """The byte values a one-character subpattern matches, or None if it is not one."""
    sub = list(sub)
    if len(sub) != 1:
        return None
    op, av = sub[0]
    if op == C.LITERAL:
        return {av}
    if op == C.NOT_LITERAL:
        return set(_ALL) - {av}
    if op == C.ANY:
        return set(_ALL) - {10}
    if op == C.IN:
        return _in_set(av)
    if op == C.SUBPATTERN:
        return _single_char_set(av[-1])
    if op == C.BRANCH:
        out: set[int] = set()
        for alt in av[1]:
            s = _single_char_set(alt)
            if s is None:
                return None
            out |= s
        return out
    return None


_CATS = {
    C.CATEGORY_DIGIT: lambda b: 48 <= b <= 57,
    C.CATEGORY_NOT_DIGIT: lambda b: not 48 <= b <= 57,
    C.CATEGORY_SPACE: lambda b: b in b" \t\n\r\f\v",
    C.CATEGORY_NOT_SPACE: lambda b: b not in b" \t\n\r\f\v",
    C.CATEGORY_WORD: lambda b: (chr(b).isalnum() and b < 128) or b == 95,
    C.CATEGORY_NOT_WORD: lambda b: not ((chr(b).isalnum() and b < 128) or b == 95),
}


def _in_set(items: Any) -> set[int]:
    out: set[int] = set()
    negate = False
    for op, av in items:
        if op == C.NEGATE:
            negate = True
        elif op == C.LITERAL:
            out.add(av)
        elif op == C.RANGE:
            out.update(range(av[0], min(av[1], 255) + 1))
        elif op == C.CATEGORY:
            pred = _CATS.get(av)
            out.update(b for b in _ALL if pred is None or pred(b))
    return set(_ALL) - out if negate else out


def compile_checked(pattern: str) -> re.Pattern[bytes]:
    """Compile a rule regex for bytes after the ReDoS check."""
    check_pattern(pattern)
    return re.compile(pattern.encode("utf-8"))
