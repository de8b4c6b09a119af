"""The canonical JSON report: ``Report.to_dict()`` in canonical order.

Field order comes from the model (no ``sort_keys``), lists are sorted by ``common.canonical``,
so two scans of one image differ only in ``created`` and ``timings``. ASCII-only output keeps
undecodable file names (lone surrogates) representable.

The document is encoded by ``orjson`` (C) when it is installed, byte for byte the text that
``json.dumps(report.to_dict(), indent=2, ensure_ascii=True)`` gives: non-ASCII characters are
escaped afterwards as ``ensure_ascii`` escapes them, and anything orjson spells differently
(a float in exponent notation) or refuses (lone surrogates, integers beyond 64 bits, keys
that are not strings) goes through the standard library's encoder instead.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Mapping
from typing import Any, TextIO

from imgscan.model import Location, Package, Report
from imgscan.reports.common import canonical
from imgscan.reports.interface import Writer

try:  # pragma: no branch
    import orjson
except ImportError:  # pragma: no cover - a dependency, but the standard encoder still works
    orjson = None  # type: ignore[assignment]

#: what ``ensure_ascii`` escapes that orjson writes as is: DEL and everything beyond ASCII
_NON_ASCII = "[\x7f-\U0010ffff]"  # compiled when needed (compiling it takes milliseconds)
_ASCII = bytes(range(0x7F))
#: where a number that orjson spells otherwise than ``float.__repr__`` may be (an exponent
#: after a digit or a point, a tiny fraction), looked for in the text with its digits all
#: made ``0``: plain ``bytes.find`` runs, several times faster than a regex over the whole
#: report; strings match too, ``_odd_numbers`` looks closer
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_TINY = b"0.0000"
_FIELDS: dict[type, tuple[str, ...]] = {}


def canonical_dict(report: Report) -> dict[str, Any]:
    """The JSON value of the report, lists in canonical order."""
    return canonical(report).to_dict()


def dumps(report: Report) -> str:
    report = canonical(report)
    if orjson is not None:
        fast = _orjson_dumps(report)
        if fast is not None:
            return fast
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=True) + "\n"


def _orjson_dumps(report: Report) -> str | None:
    """The document through orjson, or None when only the standard encoder gets it right."""
    try:
        raw = orjson.dumps(report, default=_plain,
                           option=orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATACLASS)
    except (TypeError, ValueError):  # JSONEncodeError is a TypeError
        return None
    if _odd_numbers(raw):
        return None
    text = raw.decode("utf-8")
    if not raw.isascii() or b"\x7f" in raw:
        odd = set(raw.translate(None, _ASCII).decode("utf-8"))
        if len(odd) > 64:
            text = re.sub(_NON_ASCII, lambda m: _escape(m.group()), text)
        else:  # a few distinct characters: one C-speed replace each
            for ch in odd:
                text = text.replace(ch, _escape(ch))
    return text + "\n"


def _odd_numbers(raw: bytes) -> bool:
    """Does a number in ``raw`` have an exponent or a run of leading zeros (where orjson
    and ``float.__repr__`` may differ)? Indented output has one scalar per line, and a line
    whose value is a string ends with a quote, so a candidate is checked by its line."""
    zeroed = raw.translate(_DIGITS_AS_ZERO)
    for text, needle in ((zeroed, b"0e"), (zeroed, b".e"), (raw, _TINY)):
        at = text.find(needle)
        while at >= 0:
            if (needle == _TINY or zeroed[at + 2:at + 3] in (b"-", b"0")) \
                    and not _string_line(raw, at):
                return True
            at = text.find(needle, at + 1)
    return False


def _string_line(raw: bytes, at: int) -> bool:
    """Is the value on the line of ``raw[at]`` a string (the line ends with a quote)?"""
    start = raw.rfind(b"\n", 0, at) + 1
    end = raw.find(b"\n", at)
    return raw[start:end if end >= 0 else len(raw)].rstrip(b",").endswith(b'"')


def _escape(ch: str) -> str:
    n = ord(ch)
    if n > 0xFFFF:
        n -= 0x10000
        return f"\\u{0xD800 | (n >> 10):04x}\\u{0xDC00 | (n & 0x3FF):04x}"
    return f"\\u{n:04x}"


def _plain(value: Any) -> Any:
    """What ``model.to_jsonable`` makes of what orjson does not encode itself."""
    names = _FIELDS.get(type(value))
    if names is None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            skip = "files" if isinstance(value, Package) else ""
            names = _FIELDS[type(value)] = tuple(
                f.name for f in dataclasses.fields(value) if f.name != skip)
        elif isinstance(value, enum.Enum):
            return value.value
        elif isinstance(value, Mapping):
            return {str(k): v for k, v in value.items()}
        elif isinstance(value, bytes):
            return value.hex()
        else:
            raise TypeError(f"{type(value).__name__} is not JSON serializable")
    if isinstance(value, Location) and not value.paths:  # the 1.0.0 shape: one name
        return {n: getattr(value, n) for n in names if n != "paths"}
    return {n: getattr(value, n) for n in names}


class JsonWriter(Writer):
    format_name = "json"
    extension = ".json"

    def write(self, report: Report, out: TextIO) -> None:
        out.write(dumps(report))
