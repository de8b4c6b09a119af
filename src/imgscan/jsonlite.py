"""JSON for start-up-bound commands: the same documents as the ``json`` module, without
importing it on the common path.

Why: ``import json`` pulls in ``re`` (and with it ``enum``, ``functools`` and the regex
compiler) because the pure-Python decoder and encoder compile patterns at import. ``imgscan
mount`` reads two small documents and writes one; that import was a large share of its
run time. The C accelerator ``_json`` that ``json`` itself uses does the parsing here; the
encoder below writes exactly what ``json.dumps`` writes for the plain values imgscan stores
(dicts with string keys, lists, tuples, strings, ints, floats, booleans, None).

Anything else, or any document that fails to parse, goes to the ``json`` module, so errors
and unusual input behave exactly as they always did.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_WS = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan: Callable[[str, int], tuple[object, int]] | None = None


def loads(data: str | bytes) -> object:
    """``json.loads(data)``: the same value, or the same exception."""
    global _scan
    try:
        if isinstance(data, bytes):
            # json.loads detects UTF-16/32 from NULs and BOMs in the first bytes; plain
            # ASCII without them is what it would decode as UTF-8
            if not data.isascii() or b"\x00" in data[:4]:
                raise ValueError
            data = data.decode("ascii")
        if _scan is None:
            import _json

            _scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
        start = len(data) - len(data.lstrip(_WS))
        value, end = _scan(data, start)
        if data[end:].strip(_WS):
            raise ValueError
        return value
    except Exception:
        import json

        return json.loads(data)


def dumps(obj: object, *, indent: int | None = None, sort_keys: bool = False,
          separators: tuple[str, str] | None = None) -> str:
    """``json.dumps(obj, indent=…, sort_keys=…, separators=…)`` with its default
    ``ensure_ascii``; values of other types are left to ``json.dumps``."""
    item_sep, key_sep = separators or ((",", ": ") if indent is not None else (", ", ": "))
    out: list[str] = []
    try:
        _encode(obj, out, 0, indent, sort_keys, item_sep, key_sep)
    except _Unsupported:
        import json

        return json.dumps(obj, indent=indent, sort_keys=sort_keys, separators=separators)
    return "".join(out)


class _Unsupported(Exception):
    """A value the short encoder leaves to ``json``."""


def _encode(o: object, out: list[str], level: int, indent: int | None, sort_keys: bool,
            item_sep: str, key_sep: str) -> None:
    if isinstance(o, str):
        out.append(_string(o))
    elif o is None:
        out.append("null")
    elif o is True:
        out.append("true")
    elif o is False:
        out.append("false")
    elif type(o) is int:
        out.append(int.__repr__(o))
    elif type(o) is float:
        out.append(_float(o))
    elif isinstance(o, list | tuple | dict):
        items = o.items() if isinstance(o, dict) else o
        if not items:
            out.append("{}" if isinstance(o, dict) else "[]")
            return
        if isinstance(o, dict):
            if not all(isinstance(k, str) for k in o):
                raise _Unsupported
            if sort_keys:
                items = sorted(o.items())
        sep, close = item_sep, ""
        if indent is not None:
            inner = "\n" + " " * (indent * (level + 1))
            sep, close = item_sep + inner, "\n" + " " * (indent * level)
        out.append("{" if isinstance(o, dict) else "[")
        if indent is not None:
            out.append(inner)
        for i, item in enumerate(items):
            if i:
                out.append(sep)
            if isinstance(o, dict):
                key, value = item
                out.append(_string(key))
                out.append(key_sep)
            else:
                value = item
            _encode(value, out, level + 1, indent, sort_keys, item_sep, key_sep)
        out.append(close)
        out.append("}" if isinstance(o, dict) else "]")
    else:
        raise _Unsupported


def _string(s: str) -> str:
    from _json import encode_basestring_ascii

    return str(encode_basestring_ascii(s))


def _float(f: float) -> str:
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "Infinity" if f > 0 else "-Infinity"
    return float.__repr__(f)
