"""The ignore file (``.imgscanignore``, TOML): findings a team has accepted, with a reason and
an optional expiry, so that the gate stops failing on them while the decision stays visible.

Expired entries stop applying and are warned about; entries that match nothing are warned
about too, so a stale ignore file does not hide the next real finding silently.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from imgscan.errors import UsageError
from imgscan.gate.verdict import ANALYZER as _ANALYZER
from imgscan.model import Finding, ScanWarning

IGNORE_FIELDS = ("id", "rule", "path", "package", "reason", "expires")
_SELECTORS = ("id", "rule", "path", "package")


@dataclass(frozen=True)
class IgnoreRule:
    """One ``[[ignore]]`` entry: every selector given must match (id exact; rule, path and
    package are fnmatch globs, where ``*`` also crosses ``/``; ``path`` matches
    ``config:<key>`` for image-config findings)."""

    index: int  # 1-based, as a user counts entries
    reason: str
    id: str = ""
    rule: str = ""
    path: str = ""
    package: str = ""
    expires: date | None = None

    def describe(self) -> str:
        sel = ", ".join(f"{k}={getattr(self, k)!r}" for k in _SELECTORS if getattr(self, k))
        return f"entry {self.index} ({sel})"

    def expired(self, today: date) -> bool:
        """An entry applies through its ``expires`` day and stops the day after."""
        return self.expires is not None and today > self.expires

    def matches(self, f: Finding) -> bool:
        if self.id and f.id != self.id:
            return False
        if self.rule and not any(fnmatch.fnmatchcase(name, self.rule) for name in _names(f)):
            return False
        if self.path and not fnmatch.fnmatchcase(_where(f), self.path):
            return False
        return not (self.package and not (f.package
                                          and fnmatch.fnmatchcase(f.package, self.package)))


def _names(f: Finding) -> list[str]:
    """What a ``rule`` selector matches: the rule id and, for a vulnerability, every id and
    alias it was reported under, so ``rule = "CVE-2023-1234"`` ignores the GHSA and PYSEC
    records of that CVE whichever one became the finding's primary id."""
    props = f.properties or {}
    return [f.rule_id, *props.get("ids", ()), *props.get("aliases", ())]


def _where(f: Finding) -> str:
    """What a ``path`` selector matches: the file's path, or ``config:<key>`` for findings in
    the image config (``config:Env*``)."""
    loc = f.location
    return loc.path or (f"config:{loc.config_key}" if loc.config_key else "")


@dataclass(frozen=True)
class IgnoreFile:
    source: str
    rules: tuple[IgnoreRule, ...] = ()


def _date(value: object, where: str) -> date:
    if isinstance(value, datetime):
        raise UsageError(f"{where}: expires must be a date (YYYY-MM-DD), not a date-time")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise UsageError(f"{where}: expires {value!r} is not a valid date (YYYY-MM-DD)")


def parse_ignore_file(text: str, source: str = ".imgscanignore") -> IgnoreFile:
    """Parse the TOML text of an ignore file; every mistake is a ``UsageError`` naming the
    file and the entry."""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise UsageError(f"ignore file {source}: invalid TOML: {e}") from None
    unknown = sorted(set(data) - {"version", "ignore"})
    if unknown:
        raise UsageError(f"ignore file {source}: unknown top-level key(s) {', '.join(unknown)}"
                         " (allowed: version, [[ignore]])")
    if "version" in data and data["version"] != 1:
        raise UsageError(f"ignore file {source}: unsupported version {data['version']!r}")
    entries = data.get("ignore", [])
    if not isinstance(entries, list):
        raise UsageError(f"ignore file {source}: 'ignore' must be an array of tables "
                         "([[ignore]])")
    rules = []
    for i, entry in enumerate(entries, 1):
        where = f"ignore file {source}: entry {i}"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: must be a table")
        unknown = sorted(set(entry) - set(IGNORE_FIELDS))
        if unknown:
            raise UsageError(f"{where}: unknown field(s) {', '.join(unknown)} "
                             f"(allowed: {', '.join(IGNORE_FIELDS)})")
        for k in (*_SELECTORS, "reason"):
            if k in entry and not isinstance(entry[k], str):
                raise UsageError(f"{where}: {k} must be a string")
        if not any(entry.get(k) for k in _SELECTORS):
            raise UsageError(f"{where}: needs at least one of {', '.join(_SELECTORS)}")
        reason = str(entry.get("reason", "")).strip()
        if not reason:
            raise UsageError(f"{where}: a reason is required")
        expires = _date(entry["expires"], where) if "expires" in entry else None
        rules.append(IgnoreRule(index=i, reason=reason, expires=expires,
                                **{k: entry.get(k, "") for k in _SELECTORS}))
    return IgnoreFile(source=source, rules=tuple(rules))


def load_ignore_file(path: str | Path) -> IgnoreFile:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"ignore file {path}: cannot read: {e}") from None
    return parse_ignore_file(text, str(path))


@dataclass
class IgnoreOutcome:
    kept: list[Finding]
    ignored: list[tuple[Finding, IgnoreRule]]
    warnings: list[ScanWarning]
    used: set[int] = field(default_factory=set)  # indexes of rules that matched something


def apply_ignores(findings: Iterable[Finding], ignore: IgnoreFile | None,
                  today: date | None = None, *, warn_unused: bool = True) -> IgnoreOutcome:
    """Drop the findings an active entry accepts. Expired entries do not apply and are
    warned about; entries that matched nothing are warned about (``warn_unused``)."""
    fs = list(findings)
    if ignore is None or not ignore.rules:
        return IgnoreOutcome(kept=fs, ignored=[], warnings=[])
    today = today or datetime.now(UTC).date()
    active = [r for r in ignore.rules if not r.expired(today)]
    warnings = [
        ScanWarning(f"ignore file {ignore.source}: {r.describe()} expired on "
                    f"{r.expires.isoformat()} and no longer applies", analyzer=_ANALYZER)
        for r in ignore.rules if r.expired(today) and r.expires is not None
    ]
    out = IgnoreOutcome(kept=[], ignored=[], warnings=warnings)
    for f in fs:
        rule = next((r for r in active if r.matches(f)), None)
        if rule is None:
            out.kept.append(f)
        else:
            out.ignored.append((f, rule))
            out.used.add(rule.index)
    if warn_unused:
        out.warnings += unused_warnings(ignore, out.used, today)
    return out


def unused_warnings(ignore: IgnoreFile, used: set[int], today: date) -> list[ScanWarning]:
    return [ScanWarning(f"ignore file {ignore.source}: {r.describe()} matched no finding",
                        analyzer=_ANALYZER)
            for r in ignore.rules if r.index not in used and not r.expired(today)]
