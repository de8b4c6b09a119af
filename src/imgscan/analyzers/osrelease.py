"""OS detection: os-release and the older release files (FORMATS.md §5.1).

Each file yields its own ``OSInfo``; the scanner gathers those that survive in the final
image and calls ``choose_os``, which prefers os-release and lets a fallback fill what
os-release leaves out (Debian testing has no VERSION_ID). The framework offers regular files
only, so a symlinked ``etc/os-release`` is read as its target ``usr/lib/os-release``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from imgscan.analyzers.interface import AnalysisResult, Analyzer, FileInfo, FileInput
from imgscan.model import OSInfo, ScanWarning

#: every file read, most trusted first
OS_RELEASE_PRIORITY: tuple[str, ...] = (
    "etc/os-release",
    "usr/lib/os-release",
    "etc/alpine-release",
    "etc/debian_version",
    "etc/redhat-release",
    "etc/system-release",
)
_OS_RELEASE = frozenset(OS_RELEASE_PRIORITY[:2])
MAX_SIZE = 64 << 10

_LINE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_RELEASE_RE = re.compile(r"^(?P<name>.+?)\s+release\s+(?P<version>[0-9][^\s()]*)")
#: ``<name> release <version>`` files name their distribution in prose
_RELEASE_NAMES = (
    ("red hat enterprise linux", "rhel"),
    ("centos stream", "centos"),
    ("centos", "centos"),
    ("rocky", "rocky"),
    ("almalinux", "almalinux"),
    ("fedora", "fedora"),
    ("amazon linux", "amzn"),
    ("oracle linux", "ol"),
    ("cbl-mariner", "mariner"),
    ("azure linux", "azurelinux"),
    ("scientific linux", "scientific"),
)


def unquote(value: str) -> str:
    """Shell-unquote an os-release value the way ``sh`` would (no expansion): '...' is
    literal; in "..." a backslash escapes only $ ` " \\ and newline; outside quotes it escapes
    any character. Several words (which os-release forbids unquoted) are joined with spaces.
    Raises ValueError on unbalanced quotes (``shlex`` gets the double-quote escapes wrong)."""
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == "'":
            end = value.find("'", i + 1)
            if end < 0:
                raise ValueError("unterminated single quote")
            cur.append(value[i + 1 : end])
            in_word, i = True, end + 1
        elif c == '"':
            i += 1
            while True:
                if i >= n:
                    raise ValueError("unterminated double quote")
                c = value[i]
                if c == '"':
                    break
                if c == "\\" and i + 1 < n and value[i + 1] in '$`"\\\n':
                    cur.append(value[i + 1])
                    i += 2
                    continue
                cur.append(c)
                i += 1
            in_word, i = True, i + 1
        elif c == "\\":
            if i + 1 < n:
                cur.append(value[i + 1])
            in_word, i = True, i + 2
        elif c in " \t":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
        else:
            cur.append(c)
            in_word, i = True, i + 1
    if in_word:
        words.append("".join(cur))
    return " ".join(words)


def parse_os_release(text: str) -> tuple[dict[str, str], list[str]]:
    """KEY=value pairs and problems (unparseable lines, bad quoting)."""
    out: dict[str, str] = {}
    problems: list[str] = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE_RE.match(line)
        if not m:
            problems.append(f"line {no}: not KEY=value")
            continue
        key, value = m.groups()
        try:
            out[key] = unquote(value)
        except ValueError:
            problems.append(f"line {no}: unbalanced quotes in {key}")
            out[key] = value.strip().strip("\"'")
    return out, problems


def os_from_release_file(path: str, text: str) -> OSInfo | None:
    """An OSInfo from one of the fallback files, or None when it says nothing usable."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not first:
        return None
    src = "/" + path
    if path == "etc/alpine-release":
        return OSInfo(id="alpine", version_id=first, source=src)
    if path == "etc/debian_version":
        if re.fullmatch(r"[0-9]+(\.[0-9]+)*", first):
            return OSInfo(id="debian", version_id=first, source=src)
        # testing/sid: "trixie/sid" names the release, it has no number yet
        codename = first.split("/")[0] if re.fullmatch(r"[a-z]+(/[a-z]+)?", first) else ""
        return OSInfo(id="debian", version_codename=codename, pretty_name=first, source=src)
    m = _RELEASE_RE.match(first)
    lowered = first.lower()
    os_id = next((i for key, i in _RELEASE_NAMES if lowered.startswith(key)), "")
    if not os_id:
        return None
    return OSInfo(id=os_id, version_id=m.group("version") if m else "",
                  pretty_name=first, source=src)


def os_from_os_release(path: str, fields: Mapping[str, str]) -> OSInfo | None:
    if not fields.get("ID") and not fields.get("NAME"):
        return None
    return OSInfo(
        id=fields.get("ID", "").strip(),
        version_id=fields.get("VERSION_ID", "").strip(),
        pretty_name=fields.get("PRETTY_NAME", fields.get("NAME", "")).strip(),
        version_codename=fields.get("VERSION_CODENAME", "").strip(),
        id_like=tuple(fields.get("ID_LIKE", "").split()),
        source="/" + path,
    )


def _norm(path: str) -> str:
    return path.lstrip("/")


def choose_os(candidates: Mapping[str, OSInfo]) -> OSInfo | None:
    """The image's OS from the per-file results of the final view (paths with or without a
    leading slash). os-release wins; a fallback of the same distribution fills a missing
    VERSION_ID or codename; without os-release the most trusted fallback is used."""
    by_path = {_norm(p): o for p, o in candidates.items() if o is not None}
    ordered = [by_path[p] for p in OS_RELEASE_PRIORITY if p in by_path]
    ordered += [o for p, o in sorted(by_path.items()) if p not in OS_RELEASE_PRIORITY]
    if not ordered:
        return None
    primary = next((by_path[p] for p in OS_RELEASE_PRIORITY[:2] if p in by_path), ordered[0])
    if not primary.id:
        return primary
    version_id, codename = primary.version_id, primary.version_codename
    for other in ordered:
        if other is primary or other.id != primary.id:
            continue
        if not version_id and other.version_id:
            version_id = other.version_id
        if not codename and other.version_codename:
            codename = other.version_codename
    if (version_id, codename) == (primary.version_id, primary.version_codename):
        return primary
    return OSInfo(id=primary.id, version_id=version_id, pretty_name=primary.pretty_name,
                  version_codename=codename, id_like=primary.id_like, source=primary.source)


class OSReleaseAnalyzer(Analyzer):
    """Which distribution the image is, from os-release and the older release files."""

    name = "os-release"
    version = 1
    description = "OS detection from os-release and distribution release files"
    max_read = MAX_SIZE
    always_run = True  # package purls name the distribution, whichever analyzers found them

    def required(self, info: FileInfo) -> bool:
        return info.is_regular and info.path in OS_RELEASE_PRIORITY

    @classmethod
    def choose_os(cls, candidates: Mapping[str, OSInfo]) -> OSInfo | None:
        """os-release first, release files to fill in (see the module's ``choose_os``)."""
        return choose_os(candidates)

    def analyze(self, file: FileInput) -> AnalysisResult:
        result = AnalysisResult()
        path = file.info.path
        text = file.read(MAX_SIZE).decode("utf-8", errors="replace")
        if path in _OS_RELEASE:
            fields, problems = parse_os_release(text)
            for msg in problems:
                result.warnings.append(ScanWarning(message=msg, path="/" + path,
                                                   analyzer=self.name))
            result.os = os_from_os_release(path, fields)
        else:
            result.os = os_from_release_file(path, text)
        if result.os is None:
            result.warnings.append(ScanWarning(message="no OS identification in the file",
                                               path="/" + path, analyzer=self.name))
        return result
