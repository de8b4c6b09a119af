"""The policy file (TOML): finding limits, banned packages with version ranges, and image
rules (non-root user, size, age, base OS). Violations become findings in the ``policy``
category, so the ignore file, the writers and the gate treat them like any other finding.

Version ranges are ordered by ``imgscan.versions``; this module never compares versions itself.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from imgscan.errors import UsageError
from imgscan.gate.verdict import ANALYZER as _ANALYZER
from imgscan.gate.verdict import POLICY_CATEGORY
from imgscan.model import Finding, Location, Package, Report, ScanWarning, Severity

#: purl types whose versions can be ordered come from ``imgscan.versions.COMPARATORS`` (apk and
#: maven included); other types take only ==/!= globs
from imgscan.versions import COMPARATORS as COMPARATORS

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
    from imgscan.reportschema import POLICY_SCHEMA_PATH, schema_errors

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
        from imgscan.timestamps import parse_time

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

