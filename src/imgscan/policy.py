"""The CI gate: severity threshold, ignore file, baseline and policy file, as pure functions.

The CLI reads files and prints; everything here takes values and returns values, so a library
user gets the same decisions. The order ``run_gate`` applies (and the CLI should keep):

1. the ignore file drops accepted findings (expired entries stop applying, with a warning);
2. a baseline keeps only findings that are new relative to an earlier JSON report;
3. the policy file adds violations (``category = "policy"``): limits count what is left
   (so with a baseline, ``critical = 0`` means "no new critical finding"), image rules
   (user, size, age, OS, banned packages) are checked afresh and are never baselined; the
   ignore file may accept violations too;
4. the gate fails (exit 1) when a finding at or above ``--fail-on`` remains, or any policy
   violation does.

Exit codes: 0 pass, 1 gate failed, 2 usage error (bad flag, bad ignore/policy/baseline file),
3 the image or environment could not be read.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from imgscan.errors import UsageError
from imgscan.model import (
    Finding,
    Location,
    Package,
    Report,
    ScanWarning,
    Severity,
    finding_from_dict,
)

EXIT_PASS = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_ERROR = 3

POLICY_CATEGORY = "policy"
_ANALYZER = "imgscan.policy"


# --------------------------------------------------------------------------------------------
# The gate


@dataclass(frozen=True)
class GateResult:
    """What the gate decided and why; ``failing`` are the findings that made it fail."""

    passed: bool
    fail_on: Severity | None
    failing: tuple[Finding, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_GATE_FAILED

    def summary(self) -> str:
        """One line for the terminal: ``gate failed: 2 findings at or above high, 1 policy``."""
        if self.passed:
            what = f"no finding at or above {self.fail_on.value}" if self.fail_on else "no gate"
            return f"gate passed: {what}"
        policy = sum(1 for f in self.failing if f.category == POLICY_CATEGORY)
        sev = len(self.failing) - policy
        parts = []
        if sev:
            parts.append(f"{sev} finding{'s' if sev != 1 else ''} at or above "
                         f"{self.fail_on.value if self.fail_on else '?'}")
        if policy:
            parts.append(f"{policy} policy violation{'s' if policy != 1 else ''}")
        return "gate failed: " + ", ".join(parts)


def evaluate_gate(findings: Iterable[Finding], fail_on: Severity | None,
                  policy_fails: bool = True) -> GateResult:
    """Fail when a finding at or above ``fail_on`` remains, or (``policy_fails``) any policy
    violation does. ``fail_on=None`` means no severity threshold."""
    fs = list(findings)
    failing = tuple(
        f for f in fs
        if (fail_on is not None and f.severity >= fail_on)
        or (policy_fails and f.category == POLICY_CATEGORY)
    )
    counts = Counter(f.severity.value for f in fs)
    return GateResult(passed=not failing, fail_on=fail_on, failing=failing,
                      counts={s.value: counts.get(s.value, 0) for s in Severity})


def parse_fail_on(text: str | None) -> Severity | None:
    """``--fail-on`` value: a severity name, or ``none``/empty for no threshold."""
    if text is None or text.strip().lower() in ("", "none", "never"):
        return None
    try:
        return Severity.parse(text.strip())
    except ValueError as e:
        raise UsageError(f"--fail-on: {e}") from None


# --------------------------------------------------------------------------------------------
# Ignore file (.imgscanignore, TOML)

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
        if self.rule and not fnmatch.fnmatchcase(f.rule_id, self.rule):
            return False
        if self.path and not fnmatch.fnmatchcase(_where(f), self.path):
            return False
        return not (self.package and not (f.package
                                          and fnmatch.fnmatchcase(f.package, self.package)))


def _where(f: Finding) -> str:
    """What a ``path`` selector matches: the file's path, or ``config:<key>`` for findings in
    the image config (``config:Env*``)."""
    loc = f.location
    return loc.path or (f"config:{loc.config_key}" if loc.config_key else "")


@dataclass(frozen=True)
class IgnoreFile:
    source: str
    rules: tuple[IgnoreRule, ...] = ()


def _date(value: Any, where: str) -> date:
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


# --------------------------------------------------------------------------------------------
# Baseline


def load_baseline(path: str | Path) -> dict[str, Any]:
    """An earlier JSON report, schema-checked; a bad file is a ``UsageError``."""
    from imgscan.reports import schema_errors

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UsageError(f"baseline {path}: cannot read a JSON report: {e}") from None
    errors = schema_errors(data)
    if errors:
        raise UsageError(f"baseline {path}: not an imgscan JSON report: {errors[0]}"
                         + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    return data


def _fallback_key(f: Finding) -> tuple[str, str, str]:
    loc = f.location
    return (f.rule_id, loc.path or f"config:{loc.config_key}", f.evidence_fingerprint())


@dataclass
class BaselineOutcome:
    report: Report  # only the findings new relative to the baseline
    known: list[Finding]  # findings the baseline already had


def apply_baseline(report: Report, old_report: Mapping[str, Any]) -> BaselineOutcome:
    """Keep only findings that the earlier report did not have: same stable id, or else the
    same (rule_id, path, fingerprint) — ids can differ when an analyzer changed its id input."""
    raw = old_report.get("findings") if isinstance(old_report, Mapping) else None
    if not isinstance(raw, list):
        raise UsageError("baseline: not an imgscan JSON report (no findings list)")
    ids: set[str] = set()
    keys: set[tuple[str, str, str]] = set()
    for i, d in enumerate(raw):
        try:
            old = finding_from_dict(d)
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"baseline: findings[{i}] is malformed: {e!r}") from None
        if old.id:
            ids.add(old.id)
        keys.add(_fallback_key(old))
    new, known = [], []
    for f in report.findings:
        (known if (f.id and f.id in ids) or _fallback_key(f) in keys else new).append(f)
    return BaselineOutcome(report=dataclasses.replace(report, findings=new), known=known)


# --------------------------------------------------------------------------------------------
# Version ordering for banned-package ranges (FORMATS.md §7.3)

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


#: types whose versions can be ordered; others (apk, maven, …) take only ==/!= globs
COMPARATORS: dict[str, Callable[[str, str], int]] = {
    "deb": dpkg_compare,
    "rpm": rpm_compare,
    "pypi": pep440_compare,
    "npm": semver_compare,
    "cargo": semver_compare,
    "golang": semver_compare,
}

_CLAUSE = re.compile(r"\s*(==|!=|<=|>=|<|>)?\s*(\S+)\s*")


@dataclass(frozen=True)
class VersionRange:
    """Comma-separated clauses that must all hold: ``>=1.0,<1.4``, ``==2.*``, ``!=1.2``."""

    clauses: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str, ptype: str | None, where: str) -> VersionRange:
        clauses = []
        for part in text.split(","):
            m = _CLAUSE.fullmatch(part)
            if not m:
                raise UsageError(f"{where}: bad version clause {part.strip()!r} in {text!r}")
            op, ver = m.group(1) or "==", m.group(2)
            if op not in ("==", "!=") and (ptype is None or ptype not in COMPARATORS):
                kinds = ", ".join(sorted(COMPARATORS))
                raise UsageError(
                    f"{where}: {op} needs a purl with a literal type that has a version "
                    f"order ({kinds}); got {ptype or 'a glob'} — use ==/!= with a glob")
            if op not in ("==", "!=") and ptype is not None:
                try:
                    COMPARATORS[ptype](ver, ver)
                except ValueError as e:
                    raise UsageError(f"{where}: {ver!r} is not a {ptype} version: {e}") from None
            clauses.append((op, ver))
        return cls(tuple(clauses))

    def contains(self, version: str, ptype: str) -> bool:
        """Whether ``version`` satisfies every clause; raises ValueError when it cannot be
        ordered (the caller reports it and treats the package as not matching)."""
        for op, want in self.clauses:
            if op in ("==", "!="):
                hit = fnmatch.fnmatchcase(version, want)
                ok = hit if op == "==" else not hit
            else:
                c = COMPARATORS[ptype](version, want)
                ok = {"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[op]
            if not ok:
                return False
        return True


# --------------------------------------------------------------------------------------------
# Policy file


@dataclass(frozen=True)
class BannedPackage:
    index: int
    purl: str
    reason: str
    severity: Severity
    versions: VersionRange | None = None
    versions_text: str = ""

    @property
    def ptype(self) -> str | None:
        t = self.purl[4:].split("/", 1)[0]
        return None if any(c in t for c in "*?[") else t


@dataclass(frozen=True)
class Policy:
    source: str
    severity: Severity = Severity.HIGH
    max_by_severity: Mapping[Severity, int] = field(default_factory=dict)
    max_by_category: Mapping[str, int] = field(default_factory=dict)
    banned: tuple[BannedPackage, ...] = ()
    require_non_root: bool = False
    max_size: int | None = None
    max_age_days: int | None = None
    allowed_os: tuple[str, ...] = ()


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(value: int | str) -> int:
    """``500MB`` (decimal) or ``1.5GiB`` (binary) or plain bytes."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", value)
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"bad size {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def parse_policy(text: str, source: str = "policy.toml") -> Policy:
    """Parse and schema-check a policy file; every mistake is a ``UsageError``."""
    from imgscan.reports import POLICY_SCHEMA_PATH, schema_errors

    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise UsageError(f"policy file {source}: invalid TOML: {e}") from None
    errors = schema_errors(data, POLICY_SCHEMA_PATH)
    if errors:
        shown = "; ".join(e.replace("report", "policy", 1) for e in errors[:3])
        raise UsageError(f"policy file {source}: {shown}")
    default = Severity(data.get("severity", "high"))
    limits = data.get("limits", {})
    banned = []
    for i, b in enumerate(data.get("banned_packages", []), 1):
        where = f"policy file {source}: banned_packages entry {i}"
        if "@" in b["purl"].rsplit("/", 1)[-1]:
            raise UsageError(f"{where}: {b['purl']!r}: put the version in 'versions', "
                             "the purl pattern matches type/namespace/name")
        bp = BannedPackage(index=i, purl=b["purl"], reason=b["reason"],
                           severity=Severity(b.get("severity", default.value)),
                           versions_text=b.get("versions", ""))
        if "versions" in b:
            bp = dataclasses.replace(bp, versions=VersionRange.parse(b["versions"], bp.ptype,
                                                                     where))
        banned.append(bp)
    img = data.get("image", {})
    return Policy(
        source=source,
        severity=default,
        max_by_severity={Severity(k): v for k, v in limits.get("severity", {}).items()},
        max_by_category=dict(limits.get("category", {})),
        banned=tuple(banned),
        require_non_root=bool(img.get("require_non_root", False)),
        max_size=parse_size(img["max_size"]) if "max_size" in img else None,
        max_age_days=img.get("max_age_days"),
        allowed_os=tuple(img.get("allowed_os", ())),
    )


def load_policy(path: str | Path) -> Policy:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"policy file {path}: cannot read: {e}") from None
    return parse_policy(text, str(path))


def purl_base(purl: str) -> str:
    """``pkg:type/namespace/name``: no version, qualifiers or subpath; percent-decoded so
    that patterns can say ``@types`` rather than ``%40types``."""
    base = purl.split("#", 1)[0].split("?", 1)[0]
    head, slash, last = base.rpartition("/")
    if "@" in last:  # the version; a scope's "@" is percent-encoded in a purl
        base = head + slash + last.split("@", 1)[0]
    return unquote(base)


def package_version(p: Package) -> str:
    """The version to compare: rpm packages get their epoch from metadata when the version
    string does not carry it (purls.py keeps it there)."""
    if p.type == "rpm" and ":" not in p.version and p.metadata:
        epoch = p.metadata.get("epoch")
        if epoch not in (None, "", 0, "0"):
            return f"{epoch}:{p.version}"
    return p.version


def _package_purl_base(p: Package) -> str:
    return purl_base(p.purl) if p.purl else f"pkg:{p.type}/{p.name}"


def is_root_user(user: str) -> bool:
    """Docker's ``User``: empty, ``root``, ``0`` or ``0:<group>`` run as root. A name other
    than root is taken as non-root (its uid is in the image's /etc/passwd, which the report
    does not carry)."""
    name = user.strip().split(":", 1)[0]
    return name in ("", "root", "0")


@dataclass
class PolicyResult:
    findings: list[Finding]
    warnings: list[ScanWarning]


def _violation(policy: Policy, rule: str, title: str, description: str, key: str,
               severity: Severity | None = None, location: Location | None = None,
               package: str = "") -> Finding:
    return Finding(
        rule_id=f"policy/{rule}", severity=severity or policy.severity,
        category=POLICY_CATEGORY, title=title, description=description,
        location=location or Location(), package=package,
        properties={"fingerprint": key, "policy_file": policy.source},
    ).with_id()


def evaluate_policy(report: Report, policy: Policy, now: datetime | None = None) -> PolicyResult:
    """Policy violations as findings. Limits count the report's non-policy findings as given
    (apply ignores first)."""
    now = now or datetime.now(UTC)
    out: list[Finding] = []
    warnings: list[ScanWarning] = []
    counted = [f for f in report.findings if f.category != POLICY_CATEGORY]
    by_sev = Counter(f.severity for f in counted)
    for sev, limit in sorted(policy.max_by_severity.items(), key=lambda kv: -kv[0].rank):
        if by_sev[sev] > limit:
            out.append(_violation(
                policy, "max-findings", f"{by_sev[sev]} {sev.value} findings (limit {limit})",
                f"The policy allows at most {limit} findings of severity {sev.value}.",
                f"severity:{sev.value}"))
    by_cat = Counter(f.category for f in counted)
    for cat, limit in sorted(policy.max_by_category.items()):
        if by_cat[cat] > limit:
            out.append(_violation(
                policy, "max-findings", f"{by_cat[cat]} {cat} findings (limit {limit})",
                f"The policy allows at most {limit} findings in category {cat}.",
                f"category:{cat}"))
    for p in report.packages:
        base = _package_purl_base(p)
        for b in policy.banned:
            if not fnmatch.fnmatchcase(base, unquote(b.purl)):
                continue
            if b.versions is not None:
                try:
                    if not b.versions.contains(package_version(p), p.type):
                        continue
                except (ValueError, KeyError) as e:
                    warnings.append(ScanWarning(
                        f"policy file {policy.source}: banned_packages entry {b.index}: "
                        f"cannot compare version {p.version!r} of {base}: {e}",
                        path=p.locations[0] if p.locations else "", analyzer=_ANALYZER))
                    continue
            rng = f" {b.versions_text}" if b.versions_text else ""
            out.append(_violation(
                policy, "banned-package", f"banned package {p.name} {p.version}",
                f"{b.reason} (policy: {b.purl}{rng})",
                f"{base}@{p.version}#{'|'.join(p.locations)}", severity=b.severity,
                location=Location(path=p.locations[0] if p.locations else "", layer=p.layer),
                package=p.purl))
            break
    img = report.image
    if policy.require_non_root and is_root_user(img.user):
        out.append(_violation(
            policy, "root-user", "image runs as root",
            f"The image's User is {img.user or 'not set'}; the policy requires a non-root "
            "user (USER in the Dockerfile).", f"user:{img.user}",
            location=Location(config_key="User")))
    if policy.max_size is not None and img.size > policy.max_size:
        out.append(_violation(
            policy, "max-size", f"image is {img.size} bytes (limit {policy.max_size})",
            "The image is larger than the policy allows.", "size"))
    if policy.max_age_days is not None:
        from imgscan.reports.common import parse_time

        created = parse_time(img.created)
        if created is None:
            out.append(_violation(
                policy, "max-age", "image creation time unknown",
                f"The image config's created ({img.created!r}) cannot be read, so its age "
                f"cannot be checked against {policy.max_age_days} days.", "age",
                location=Location(config_key="created")))
        else:
            age = (now - created).days
            if age > policy.max_age_days:
                out.append(_violation(
                    policy, "max-age", f"image is {age} days old (limit "
                    f"{policy.max_age_days})", f"The image was created on {img.created}.",
                    "age", location=Location(config_key="created")))
    if policy.allowed_os:
        os_id = report.os.id if report.os else ""
        ver = report.os.version_id if report.os else ""
        if not any(_os_allowed(os_id, ver, pat) for pat in policy.allowed_os):
            shown = f"{os_id}:{ver}" if os_id else "unknown"
            out.append(_violation(
                policy, "base-os", f"base OS {shown} is not allowed",
                "Allowed: " + ", ".join(policy.allowed_os), "os",
                location=Location(path=report.os.source if report.os else "")))
    return PolicyResult(findings=out, warnings=warnings)


def _os_allowed(os_id: str, version: str, pattern: str) -> bool:
    pid, _, pver = pattern.partition(":")
    return bool(os_id) and fnmatch.fnmatchcase(os_id, pid) and (
        not pver or fnmatch.fnmatchcase(version, pver))


# --------------------------------------------------------------------------------------------
# The whole pipeline


@dataclass
class GateOutcome:
    """The report as the gate saw it (ignored and baselined findings removed, policy
    violations added, ignore-file warnings appended), the decision, and what was left out."""

    report: Report
    gate: GateResult
    ignored: list[tuple[Finding, IgnoreRule]]
    known: list[Finding]
    warnings: list[ScanWarning]

    @property
    def exit_code(self) -> int:
        return self.gate.exit_code


def run_gate(report: Report, *, fail_on: Severity | None = None,
             ignore: IgnoreFile | None = None, baseline: Mapping[str, Any] | None = None,
             policy: Policy | None = None, today: date | None = None,
             now: datetime | None = None) -> GateOutcome:
    """Apply ignore file, baseline, policy and threshold in that order (module docstring)."""
    now = now or datetime.now(UTC)
    today = today or now.date()
    first = apply_ignores(report.findings, ignore, today, warn_unused=False)
    warnings = list(first.warnings)
    ignored = list(first.ignored)
    used = set(first.used)
    out = dataclasses.replace(report, findings=list(first.kept))
    known: list[Finding] = []
    if baseline is not None:
        b = apply_baseline(out, baseline)
        out, known = b.report, b.known
    if policy is not None:
        pr = evaluate_policy(out, policy, now)
        warnings += pr.warnings
        second = apply_ignores(pr.findings, ignore, today, warn_unused=False)
        ignored += second.ignored
        used |= second.used
        out = dataclasses.replace(out, findings=[*out.findings, *second.kept])
    if ignore is not None:
        warnings += unused_warnings(ignore, used, today)
    out = dataclasses.replace(out, warnings=[*out.warnings, *warnings])
    gate = evaluate_gate(out.findings, fail_on)
    return GateOutcome(report=out, gate=gate, ignored=ignored, known=known, warnings=warnings)
