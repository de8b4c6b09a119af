"""A bounds-checked parser for rpm header blobs as rpm databases store them (FORMATS.md §5.3).

A database blob starts directly at ``il`` (no 8-byte magic): ``il`` 16-byte index entries,
then ``dl`` bytes of data, all big-endian. Blobs come from untrusted images, so every count,
offset and string end is checked against the data area before it is touched; anything that
does not fit raises ``HeaderError`` with a message fit for a scan warning.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

#: rpm's own limits (header_internal.h): at most 0xffff tags and 256 MiB of data
MAX_INDEX_ENTRIES = 0xFFFF
MAX_HEADER_SIZE = 256 << 20

# entry types
NULL, CHAR, INT8, INT16, INT32, INT64, STRING, BIN, STRING_ARRAY, I18NSTRING = range(10)
_INT_SIZES = {CHAR: 1, INT8: 1, INT16: 2, INT32: 4, INT64: 8}
_INT_FORMATS = {CHAR: "B", INT8: "B", INT16: "H", INT32: "I", INT64: "Q"}

# tags the catalogers read
#: region tags: HEADERIMAGE, HEADERSIGNATURES, HEADERIMMUTABLE
REGION_TAGS = (61, 62, 63)
TAG_NAME = 1000
TAG_VERSION = 1001
TAG_RELEASE = 1002
TAG_EPOCH = 1003
TAG_SUMMARY = 1004
TAG_INSTALLTIME = 1008
TAG_SIZE = 1009
TAG_VENDOR = 1011
TAG_LICENSE = 1014
TAG_ARCH = 1022
TAG_OLDFILENAMES = 1027
TAG_SOURCERPM = 1044
TAG_DIRINDEXES = 1116
TAG_BASENAMES = 1117
TAG_DIRNAMES = 1118
TAG_MODULARITYLABEL = 5096


class HeaderError(ValueError):
    """The blob is not a well-formed rpm header; the message says where it breaks."""


Value = str | bytes | list[str] | list[int] | None


@dataclass(frozen=True)
class Header:
    """The decoded tags of one header: tag -> value (str, list[str], list[int] or bytes)."""

    tags: Mapping[int, Value]

    def string(self, tag: int) -> str:
        v = self.tags.get(tag)
        if isinstance(v, str):
            return v
        if isinstance(v, list) and v and isinstance(v[0], str):
            return v[0]
        return ""

    def strings(self, tag: int) -> list[str]:
        v = self.tags.get(tag)
        if isinstance(v, str):
            return [v]
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return list(v)  # type: ignore[arg-type]
        return []

    def ints(self, tag: int) -> list[int]:
        v = self.tags.get(tag)
        if isinstance(v, list) and all(isinstance(x, int) for x in v):
            return list(v)  # type: ignore[arg-type]
        return []

    def has(self, tag: int) -> bool:
        return tag in self.tags

    # last: below this method, ``int`` in the class body names it, not the builtin
    def int(self, tag: int) -> int | None:
        v = self.ints(tag)
        return v[0] if v else None


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _strings(data: bytes, offset: int, count: int, tag: int) -> list[str]:
    """``count`` NUL-terminated strings starting at ``offset``, each end checked."""
    out: list[str] = []
    pos = offset
    for _ in range(count):
        end = data.find(b"\0", pos)
        if end < 0:
            raise HeaderError(f"tag {tag}: string runs past the end of the data")
        out.append(_decode(data[pos:end]))
        pos = end + 1
    return out


def _region_entries(blob: bytes, data: bytes, il: int) -> int:
    """How many leading entries the header's region covers (``il`` when it has none).

    A region tag (61/62/63, BIN, count 16) points at a 16-byte trailer in the data whose
    negated ``offset`` is 16 x the number of entries in the region; entries after those
    are "dribble" entries added later, which override tags inside the region."""
    tag, typ, offset, count = struct.unpack_from(">iIiI", blob, 8)
    if tag not in REGION_TAGS:
        return il
    if typ != BIN or count != 16:
        raise HeaderError(f"region tag {tag} has type {typ} and count {count}, not BIN/16")
    if offset < 0 or offset + 16 > len(data):
        raise HeaderError(f"region tag {tag}: trailer at {offset} outside data of {len(data)}")
    ttag, ttype, toffset, tcount = struct.unpack_from(">iIiI", data, offset)
    if ttag not in REGION_TAGS or ttype != BIN or tcount != 16 or toffset > 0 or toffset % 16:
        raise HeaderError(f"region tag {tag}: malformed trailer")
    ril = -toffset // 16
    if not 1 <= ril <= il:
        raise HeaderError(f"region tag {tag}: region of {ril} entries in a header of {il}")
    return ril


def parse_header(blob: bytes, wanted: frozenset[int] | None = None) -> Header:
    """Decode a database header blob. ``wanted`` limits decoding to those tags (all are still
    bounds-checked structurally). Dribble entries follow the region, so letting a later
    entry of a tag win makes them override the region's, as rpm does."""
    n = len(blob)
    if n < 8:
        raise HeaderError(f"header blob of {n} bytes is shorter than its 8-byte preamble")
    if n >= MAX_HEADER_SIZE:
        raise HeaderError(f"header blob of {n} bytes exceeds the {MAX_HEADER_SIZE} byte limit")
    il, dl = struct.unpack_from(">II", blob, 0)
    if il == 0 or il > MAX_INDEX_ENTRIES:
        raise HeaderError(f"index entry count {il} outside 1..{MAX_INDEX_ENTRIES}")
    if dl > MAX_HEADER_SIZE:
        raise HeaderError(f"data length {dl} exceeds the {MAX_HEADER_SIZE} byte limit")
    data_start = 8 + 16 * il
    if data_start + dl > n:
        raise HeaderError(
            f"header declares {il} entries and {dl} data bytes ({data_start + dl} in all) "
            f"but the blob has {n}"
        )
    data = blob[data_start : data_start + dl]
    region_end = _region_entries(blob, data, il)
    tags: dict[int, Value] = {}
    for i in range(il):
        tag, typ, offset, count = struct.unpack_from(">iIiI", blob, 8 + 16 * i)
        if i < region_end and tag in tags and tag not in REGION_TAGS:
            raise HeaderError(f"tag {tag} twice inside the region")
        if typ > I18NSTRING:
            raise HeaderError(f"entry {i} (tag {tag}): unknown type {typ}")
        if offset < 0 or offset > dl:
            raise HeaderError(f"entry {i} (tag {tag}): offset {offset} outside data of {dl}")
        if typ == NULL:
            continue
        if count == 0 or count > dl:
            raise HeaderError(f"entry {i} (tag {tag}): count {count} impossible for {dl} bytes")
        if typ in _INT_SIZES:
            size = _INT_SIZES[typ] * count
            if offset + size > dl:
                raise HeaderError(f"entry {i} (tag {tag}): {size} bytes at {offset} past {dl}")
            if wanted is None or tag in wanted:
                tags[tag] = list(struct.unpack_from(f">{count}{_INT_FORMATS[typ]}", data, offset))
        elif typ == BIN:
            if offset + count > dl:
                raise HeaderError(f"entry {i} (tag {tag}): {count} bytes at {offset} past {dl}")
            if wanted is None or tag in wanted:
                tags[tag] = data[offset : offset + count]
        elif typ == STRING:
            if count != 1:
                raise HeaderError(f"entry {i} (tag {tag}): STRING with count {count}")
            if wanted is None or tag in wanted:
                tags[tag] = _strings(data, offset, 1, tag)[0]
            elif data.find(b"\0", offset) < 0:
                raise HeaderError(f"tag {tag}: string runs past the end of the data")
        else:  # STRING_ARRAY, I18NSTRING
            if wanted is None or tag in wanted:
                tags[tag] = _strings(data, offset, count, tag)
    return Header(tags)
