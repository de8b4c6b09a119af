"""Version orderings, one per package ecosystem (FORMATS.md §7.3).

Every compare function takes two version strings and returns -1, 0 or 1, and raises
``ValueError`` for a string that is not a version of that ecosystem: a vulnerability range
that cannot be evaluated must be reported, never guessed. dpkg and rpm are proven against
``dpkg --compare-versions`` and rpm's own ``rpm.vercmp`` in ``tests/test_versions.py``.

``compare_for(ecosystem)`` picks the ordering for an OSV ecosystem string (``Debian:12``,
``PyPI``, ``Go``…); ``COMPARATORS`` maps purl types for the policy's banned-package ranges.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Compare = Callable[[str, str], int]

__all__ = [
    "COMPARATORS",
    "apk_compare",
    "compare_for",
    "crates_compare",
    "dpkg_compare",
    "go_compare",
    "go_toolchain_semver",
    "maven_compare",
    "npm_compare",
    "pep440_compare",
    "rpm_compare",
    "rpmvercmp",
    "semver_compare",
]

_DIGITS = "0123456789"


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


# --------------------------------------------------------------------------------------------
# dpkg (deb-version(7))


def _dpkg_order(c: str) -> int:
    """Weight of one non-digit character: ``~`` before end-of-string, letters before the rest."""
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
        si = i
        while i < len(a) and a[i] in _DIGITS:
            i += 1
        sj = j
        while j < len(b) and b[j] in _DIGITS:
            j += 1
        x, y = int(a[si:i] or "0"), int(b[sj:j] or "0")
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


# --------------------------------------------------------------------------------------------
# rpm (rpmio/rpmvercmp.cc, rpmver.cc)


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _is_digit(c: str) -> bool:
    return c in _DIGITS and c != ""


def _is_alpha(c: str) -> bool:
    return c.isascii() and c.isalpha()


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
        pick = _is_digit if numeric else _is_alpha
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


# --------------------------------------------------------------------------------------------
# apk (apk-tools src/version.c)

_APK_DIGIT, _APK_LETTER, _APK_SUFFIX, _APK_SUFFIX_NO, _APK_HASH, _APK_REV, _APK_END = range(7)
_APK_PRE = ("alpha", "beta", "pre", "rc")
_APK_POST = ("cvs", "svn", "git", "hg", "p")
_APK_SUFFIXES = {s: i - len(_APK_PRE) for i, s in enumerate(_APK_PRE)}
_APK_SUFFIXES.update({s: i + 1 for i, s in enumerate(_APK_POST)})
_APK_TOKEN = re.compile(
    r"(?P<digit>\.[0-9]+)|(?P<letter>[a-z])|_(?P<suffix>[a-z]+)(?P<suffix_no>[0-9]*)"
    r"|~(?P<hash>[0-9a-f]+)|-r(?P<rev>[0-9]+)"
)


def _apk_tokens(v: str) -> list[tuple[int, Any]]:
    """Tokens of an apk version in grammar order; ``ValueError`` for an out-of-order token
    (apk-tools calls such a version invalid and so does not order it)."""
    m = re.match(r"[0-9]+", v)
    if not m:
        raise ValueError(f"apk version must start with a digit: {v!r}")
    toks: list[tuple[int, Any]] = [(_APK_DIGIT, m.group())]
    pos, last = m.end(), _APK_DIGIT
    while pos < len(v):
        t = _APK_TOKEN.match(v, pos)
        if not t:
            raise ValueError(f"bad apk version {v!r} at {v[pos:]!r}")
        kind = t.lastgroup if t.lastgroup != "suffix_no" else "suffix"
        if t.group("digit"):
            new: list[tuple[int, Any]] = [(_APK_DIGIT, t.group("digit")[1:])]
        elif t.group("letter"):
            new = [(_APK_LETTER, t.group("letter"))]
        elif t.group("suffix") is not None and kind == "suffix":
            name = t.group("suffix")
            if name not in _APK_SUFFIXES:
                raise ValueError(f"unknown apk suffix _{name} in {v!r}")
            new = [(_APK_SUFFIX, _APK_SUFFIXES[name])]
            if t.group("suffix_no"):
                new.append((_APK_SUFFIX_NO, int(t.group("suffix_no"))))
        elif t.group("hash"):
            new = [(_APK_HASH, t.group("hash"))]
        else:
            new = [(_APK_REV, int(t.group("rev")))]
        first = new[0][0]
        repeatable = first in (_APK_DIGIT, _APK_SUFFIX) and last in (first, _APK_SUFFIX_NO)
        resuffix = first == _APK_SUFFIX and last == _APK_SUFFIX_NO
        if (first < last or (first == last and not repeatable)) and not resuffix:
            raise ValueError(f"apk version {v!r}: token out of order at {v[pos:]!r}")
        toks.extend(new)
        last, pos = new[-1][0], t.end()
    toks.append((_APK_END, None))
    return toks


def _apk_digit_cmp(a: str, b: str, initial: bool) -> int:
    if not initial and (a.startswith("0") or b.startswith("0")):
        return _sign((a > b) - (a < b))  # Gentoo rule: a leading zero compares as a string
    return _sign(int(a) - int(b))


def apk_compare(a: str, b: str) -> int:
    """apk-tools order: ``1.0_rc1 < 1.0 < 1.0-r1 < 1.0.1``, ``1.0 < 1.0a < 1.0_p1``."""
    ta, tb = _apk_tokens(a.strip()), _apk_tokens(b.strip())
    for n, ((ka, va), (kb, vb)) in enumerate(zip(ta, tb, strict=False)):
        if ka != kb:
            if ka == _APK_SUFFIX and va < 0:
                return -1
            if kb == _APK_SUFFIX and vb < 0:
                return 1
            return -1 if ka > kb else 1
        if ka == _APK_END:
            return 0
        c = _apk_digit_cmp(va, vb, n == 0) if ka == _APK_DIGIT else (va > vb) - (va < vb)
        if c:
            return c
    return 0  # pragma: no cover - both lists end with END


# --------------------------------------------------------------------------------------------
# SemVer 2.0 (npm, crates.io, Go modules, OSV ``SEMVER`` ranges)

_SEMVER = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")


def _semver_key(v: str) -> tuple[Any, ...]:
    m = _SEMVER.fullmatch(v.strip().lstrip("="))
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


npm_compare = semver_compare
crates_compare = semver_compare

_GO_TOOLCHAIN = re.compile(r"(?:go)?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:(alpha|beta|rc)(\d+))?")


def go_toolchain_semver(v: str) -> str:
    """``go1.19.8`` -> ``1.19.8``, ``go1.21rc2`` -> ``1.21.0-rc.2``: the Go vulnerability
    database writes standard-library versions as SemVer without the ``go`` prefix."""
    m = _GO_TOOLCHAIN.fullmatch(v.strip().split(" ")[0])
    if not m:
        raise ValueError(f"not a Go toolchain version: {v!r}")
    major, minor, patch, pre, pre_n = m.groups()
    core = f"{major}.{minor or 0}.{patch or 0}"
    return f"{core}-{pre}.{pre_n}" if pre else core


def go_compare(a: str, b: str) -> int:
    """Go module versions (``v1.2.3``, pseudo-versions) and toolchain versions (``go1.19``)."""
    def norm(v: str) -> str:
        return go_toolchain_semver(v) if v.strip().startswith("go") else v
    return semver_compare(norm(a), norm(b))


# --------------------------------------------------------------------------------------------
# PEP 440 (PyPI)


def pep440_compare(a: str, b: str) -> int:
    """PEP 440 order through ``packaging``, the reference implementation pip uses."""
    from packaging.version import InvalidVersion, Version

    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion as e:
        raise ValueError(str(e)) from None
    return (va > vb) - (va < vb)


# --------------------------------------------------------------------------------------------
# Maven (org.apache.maven.artifact.versioning.ComparableVersion)

_MVN_QUALIFIERS = ("alpha", "beta", "milestone", "rc", "snapshot", "", "sp")
_MVN_ALIASES = {"ga": "", "final": "", "release": "", "cr": "rc"}
_MVN_SHORT = {"a": "alpha", "b": "beta", "m": "milestone"}


def _mvn_qualifier(s: str) -> str:
    s = _MVN_ALIASES.get(s, s)
    if s in _MVN_QUALIFIERS:
        return str(_MVN_QUALIFIERS.index(s))
    return f"{len(_MVN_QUALIFIERS)}-{s}"


def _mvn_item(tok: str, followed_by_digit: bool) -> Any:
    if tok.isdigit():
        return int(tok)
    if followed_by_digit and len(tok) == 1:
        tok = _MVN_SHORT.get(tok, tok)
    return tok


def _mvn_is_null(item: Any) -> bool:
    return item == 0 or item == "" or (isinstance(item, list) and not item)


def _mvn_normalize(items: list[Any]) -> None:
    while items and _mvn_is_null(items[-1]):
        items.pop()


def _mvn_parse(v: str) -> list[Any]:
    v = v.strip().lower()
    root: list[Any] = []
    cur, stack = root, [root]
    start, is_digit = 0, False
    for i, c in enumerate(v):
        if c in ".-":
            cur.append(_mvn_item(v[start:i], False) if i > start else 0)
            start = i + 1
            if c == "-":
                nxt: list[Any] = []
                cur.append(nxt)
                cur = nxt
                stack.append(cur)
        elif c.isdigit():
            if not is_digit and i > start:
                cur.append(_mvn_item(v[start:i], True))
                start = i
                nxt = []
                cur.append(nxt)
                cur = nxt
                stack.append(cur)
            is_digit = True
        else:
            if is_digit and i > start:
                cur.append(_mvn_item(v[start:i], False))
                start = i
                nxt = []
                cur.append(nxt)
                cur = nxt
                stack.append(cur)
            is_digit = False
    if len(v) > start:
        cur.append(_mvn_item(v[start:], False))
    for lst in reversed(stack):
        _mvn_normalize(lst)
    return root


def _mvn_cmp(a: Any, b: Any) -> int:
    """``a`` compared with ``b``, where ``b`` may be None (the padding of a shorter list)."""
    if isinstance(a, int):
        if b is None:
            return 0 if a == 0 else 1
        if isinstance(b, int):
            return _sign(a - b)
        return 1
    if isinstance(a, str):
        qa = _mvn_qualifier(a)
        if b is None:
            qb = _mvn_qualifier("")
        elif isinstance(b, str):
            qb = _mvn_qualifier(b)
        else:
            return -1
        return (qa > qb) - (qa < qb)
    if b is None:
        return _mvn_cmp(a[0], None) if a else 0
    if isinstance(b, int):
        return -1
    if isinstance(b, str):
        return 1
    for n in range(max(len(a), len(b))):
        x = a[n] if n < len(a) else None
        y = b[n] if n < len(b) else None
        c = -_mvn_cmp(y, x) if x is None else _mvn_cmp(x, y)
        if c:
            return c
    return 0


def maven_compare(a: str, b: str) -> int:
    """Maven's ``ComparableVersion``: ``1.0-alpha1 < 1.0-rc1 < 1.0 = 1.0.0 = 1.0-ga < 1.0-sp1``."""
    if not a.strip() or not b.strip():
        raise ValueError("empty Maven version")
    return _mvn_cmp(_mvn_parse(a), _mvn_parse(b))


# --------------------------------------------------------------------------------------------
# Dispatch

#: purl types whose versions can be ordered (the policy's banned-package ranges)
COMPARATORS: dict[str, Compare] = {
    "deb": dpkg_compare,
    "rpm": rpm_compare,
    "apk": apk_compare,
    "pypi": pep440_compare,
    "npm": semver_compare,
    "cargo": semver_compare,
    "golang": semver_compare,
    "maven": maven_compare,
}

_BY_ECOSYSTEM: dict[str, Compare] = {
    "Debian": dpkg_compare,
    "Ubuntu": dpkg_compare,
    "Alpine": apk_compare,
    "Wolfi": apk_compare,
    "Chainguard": apk_compare,
    "Red Hat": rpm_compare,
    "AlmaLinux": rpm_compare,
    "Rocky Linux": rpm_compare,
    "openSUSE": rpm_compare,
    "SUSE": rpm_compare,
    "Azure Linux": rpm_compare,
    "Mariner": rpm_compare,
    "Photon OS": rpm_compare,
    "PyPI": pep440_compare,
    "npm": npm_compare,
    "crates.io": crates_compare,
    "Go": go_compare,
    "Maven": maven_compare,
}


def ecosystem_base(ecosystem: str) -> str:
    """``Debian:12`` -> ``Debian``; ``Maven:https://…`` -> ``Maven``."""
    return ecosystem.split(":", 1)[0]


def compare_for(ecosystem: str) -> Compare | None:
    """The ordering of an OSV ecosystem (with or without its release suffix), or None when
    imgscan knows no ordering for it (its ``ECOSYSTEM`` ranges are then not evaluated)."""
    return _BY_ECOSYSTEM.get(ecosystem_base(ecosystem))
