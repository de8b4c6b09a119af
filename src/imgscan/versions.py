"""Version orderings: dpkg, rpm, SemVer and PEP 440, each ``compare(a, b) -> -1 | 0 | 1``.

Their own module because more than the gate needs them (policy version ranges today, the
vulnerability matcher's affected ranges too); the orderings follow FORMATS.md §7.3. A string
that cannot be ordered raises ``ValueError`` so that callers decide how to report it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_DIGITS = "0123456789"


def _dpkg_order(c: str) -> int:
    if c == "~":
        return -1
    if c.isascii() and c.isalpha():
        return ord(c)
    return ord(c) + 256


def _dpkg_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and a[i] not in _DIGITS) or (j < len(b) and b[j] not in _DIGITS):
            ac = _dpkg_order(a[i]) if i < len(a) and a[i] not in _DIGITS else 0
            bc = _dpkg_order(b[j]) if j < len(b) and b[j] not in _DIGITS else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i, j = i + 1, j + 1
        na = ""
        while i < len(a) and a[i] in _DIGITS:
            na, i = na + a[i], i + 1
        nb = ""
        while j < len(b) and b[j] in _DIGITS:
            nb, j = nb + b[j], j + 1
        x, y = int(na or "0"), int(nb or "0")
        if x != y:
            return -1 if x < y else 1
    return 0


def _dpkg_split(v: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in v:
        e, v = v.split(":", 1)
        if not e.isdigit():
            raise ValueError(f"bad epoch in {v!r}")
        epoch = int(e)
    upstream, _, revision = v.rpartition("-") if "-" in v else (v, "", "")
    if not upstream:
        raise ValueError("empty upstream version")
    return epoch, upstream, revision


def dpkg_compare(a: str, b: str) -> int:
    """dpkg's version order (deb-version(7)): epoch, upstream, revision; ``~`` sorts first."""
    ea, ua, ra = _dpkg_split(a.strip())
    eb, ub, rb = _dpkg_split(b.strip())
    if ea != eb:
        return -1 if ea < eb else 1
    return _dpkg_part(ua, ub) or _dpkg_part(ra, rb)


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def rpmvercmp(a: str, b: str) -> int:
    """rpm's segment comparison of one version or release string."""
    if a == b:
        return 0
    i = j = 0
    while i < len(a) or j < len(b):
        while i < len(a) and not _alnum(a[i]) and a[i] not in "~^":
            i += 1
        while j < len(b) and not _alnum(b[j]) and b[j] not in "~^":
            j += 1
        ta, tb = (a[i] if i < len(a) else ""), (b[j] if j < len(b) else "")
        if ta == "~" or tb == "~":
            if ta != "~":
                return 1
            if tb != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if ta == "^" or tb == "^":
            if not ta:
                return -1
            if not tb:
                return 1
            if ta != "^":
                return 1
            if tb != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (ta and tb):
            break
        numeric = ta in _DIGITS
        pick: Callable[[str], bool] = (
            (lambda c: c in _DIGITS) if numeric else (lambda c: c.isascii() and c.isalpha()))
        si = i
        while i < len(a) and pick(a[i]):
            i += 1
        sj = j
        while j < len(b) and pick(b[j]):
            j += 1
        sa, sb = a[si:i], b[sj:j]
        if not sb:
            return 1 if numeric else -1
        if numeric:
            sa, sb = sa.lstrip("0"), sb.lstrip("0")
            if len(sa) != len(sb):
                return -1 if len(sa) < len(sb) else 1
        if sa != sb:
            return -1 if sa < sb else 1
    if i >= len(a) and j >= len(b):
        return 0
    return -1 if i >= len(a) else 1


def _rpm_evr(v: str) -> tuple[str, str, str | None]:
    epoch = "0"
    if ":" in v:
        epoch, v = v.split(":", 1)
    version, sep, release = v.rpartition("-")
    if not sep:
        return epoch or "0", v, None
    return epoch or "0", version, release


def rpm_compare(a: str, b: str) -> int:
    """EVR order: epoch, version, then release (a side without a release is older)."""
    ea, va, ra = _rpm_evr(a.strip())
    eb, vb, rb = _rpm_evr(b.strip())
    c = rpmvercmp(ea, eb) or rpmvercmp(va, vb)
    if c or (ra is None and rb is None):
        return c
    if ra is None or rb is None:
        return -1 if ra is None else 1
    return rpmvercmp(ra, rb)


_SEMVER = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")


def _semver_key(v: str) -> tuple[Any, ...]:
    m = _SEMVER.fullmatch(v.strip())
    if not m:
        raise ValueError(f"not a semantic version: {v!r}")
    core = tuple(int(x or 0) for x in m.group(1, 2, 3))
    pre = m.group(4)
    if pre is None:
        return (*core, 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (*core, 0, ids)


def semver_compare(a: str, b: str) -> int:
    """SemVer 2.0 precedence (npm, cargo, Go modules with their ``v``); build metadata
    ignored; missing minor/patch count as 0."""
    ka, kb = _semver_key(a), _semver_key(b)
    return (ka > kb) - (ka < kb)


def pep440_compare(a: str, b: str) -> int:
    from packaging.version import InvalidVersion, Version

    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion as e:
        raise ValueError(str(e)) from None
    return (va > vb) - (va < vb)
