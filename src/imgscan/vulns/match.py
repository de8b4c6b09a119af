"""Matching the packages of a report against the vulnerability database.

OS packages are looked up by their *source* package in the OS's ecosystem and release
(``Debian:12``, ``Alpine:v3.19``), because that is what OS advisories name; language packages
by their ecosystem's normalised name. Each range is evaluated with its ecosystem's exact
ordering (``imgscan.versions``). Records that alias each other (a GHSA and a PYSEC record for
one CVE) give one finding per package listing every id. For Go, a record that names symbols
is checked against the binary's pclntab and marked ``not-reachable`` when none is linked in.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imgscan.model import Finding, Location, OSInfo, Package, Report, ScanWarning, Severity
from imgscan.versions import Compare, compare_for, go_compare, go_toolchain_semver, semver_compare
from imgscan.vulns.db import lookup, open_db
from imgscan.vulns.severity import rate

CATEGORY = "vulnerability"


@dataclass(frozen=True)
class Query:
    """How one package is looked up: OSV ecosystems to search, name and version to compare."""

    ecosystems: tuple[str, ...]
    name: str
    version: str


@dataclass
class MatchResult:
    findings: list[Finding] = field(default_factory=list)
    warnings: list[ScanWarning] = field(default_factory=list)


def os_ecosystems(os_info: OSInfo | None) -> tuple[str, ...]:
    """The OSV ecosystems of an OS release from its os-release fields (FORMATS.md §7.2)."""
    if os_info is None:
        return ()
    oid, ver = os_info.id.lower(), os_info.version_id
    major = ver.split(".")[0]
    if oid == "debian":
        if major:
            return (f"Debian:{major}",)
        return (f"Debian:{os_info.version_codename}",) if os_info.version_codename else ()
    if oid == "ubuntu" and ver:
        return (f"Ubuntu:{ver}", f"Ubuntu:{ver}:LTS")
    if oid == "alpine" and ver:
        return ("Alpine:v" + ".".join(ver.split(".")[:2]),)
    if oid in ("wolfi", "chainguard"):
        return (oid.capitalize(),)
    named = {"rocky": "Rocky Linux", "almalinux": "AlmaLinux", "azurelinux": "Azure Linux",
             "mariner": "Mariner", "photon": "Photon OS"}
    if oid in named and major:
        return (f"{named[oid]}:{major}", f"{named[oid]}:{ver}")
    if oid.startswith("opensuse") and os_info.pretty_name:
        return (f"openSUSE:{os_info.pretty_name}",)
    if oid in ("sles", "sled", "sle-micro") and os_info.pretty_name:
        return (f"SUSE:{os_info.pretty_name}",)
    return ()


def package_query(pkg: Package, os_info: OSInfo | None) -> Query | None:
    """The database lookup for one package, or None when its ecosystem is not covered."""
    if pkg.type in ("deb", "rpm", "apk"):
        ecos = os_ecosystems(os_info)
        name = pkg.source_name or pkg.name
        version = pkg.source_version or pkg.version
        return Query(ecos, name, version) if ecos else None
    if pkg.type == "pypi":
        return Query(("PyPI",), pkg.name, pkg.version)
    if pkg.type == "npm":
        return Query(("npm",), pkg.name, pkg.version)
    if pkg.type == "cargo":
        return Query(("crates.io",), pkg.name, pkg.version)
    if pkg.type == "golang":
        if pkg.name == "stdlib":
            try:
                return Query(("Go",), "stdlib", go_toolchain_semver(pkg.version))
            except ValueError:
                return None
        if not pkg.version or pkg.version == "(devel)":
            return None
        return Query(("Go",), pkg.name, pkg.version.removeprefix("v"))
    if pkg.type == "maven":
        group = pkg.metadata.get("group_id") if pkg.metadata else None
        return Query(("Maven",), f"{group}:{pkg.name}", pkg.version) if group else None
    return None


def _ordering(range_type: str, ecosystem: str) -> Compare | None:
    if range_type == "SEMVER":
        return go_compare if ecosystem == "Go" else semver_compare
    if range_type == "ECOSYSTEM":
        return compare_for(ecosystem)
    return None  # GIT ranges need the commit graph; a scanner of binaries has none


def affects(version: str, entry: Mapping[str, Any]) -> tuple[bool, str]:
    """(affected, first fixed version above it or "") per the OSV evaluation: listed in
    ``versions``, or inside a range whose events, sorted by version, leave it affected.
    ``ValueError`` when the version cannot be ordered in the record's ecosystem."""
    eco = entry["package"]["ecosystem"]
    hit = version in entry.get("versions", ())
    fixes: list[str] = []
    for r in entry.get("ranges", ()):
        cmp = _ordering(r.get("type", ""), eco)
        if cmp is None:
            continue
        events = [next(iter(e.items())) for e in r["events"]]
        limits = [v for k, v in events if k == "limit"]
        if limits and not any(v == "*" or cmp(version, v) < 0 for v in limits):
            continue

        def key(ev: tuple[str, str], other: tuple[str, str], cmp: Compare = cmp) -> int:
            zero_a, zero_b = ev == ("introduced", "0"), other == ("introduced", "0")
            if zero_a or zero_b:
                return zero_b - zero_a
            return cmp(ev[1], other[1])

        affected = False
        ordered = sorted((e for e in events if e[0] != "limit"), key=functools.cmp_to_key(key))
        for kind, v in ordered:
            if kind == "introduced" and (v == "0" or cmp(version, v) >= 0):
                affected = True
            elif (kind == "fixed" and cmp(version, v) >= 0) or \
                    (kind == "last_affected" and cmp(version, v) > 0):
                affected = False
        if affected:
            hit = True
            fixes += [v for k, v in events if k == "fixed" and cmp(v, version) > 0]
    if not hit:
        return False, ""
    cmp0 = compare_for(eco) or semver_compare
    return True, min(fixes, key=functools.cmp_to_key(cmp0)) if fixes else ""


def reachable(entry: Mapping[str, Any], symbols: frozenset[str]) -> tuple[bool, str]:
    """Whether a Go record's vulnerable symbols are in the binary (``symbols`` from
    ``gosymbols.symbol_index``), with the reason; True when the record names none."""
    spec = entry.get("ecosystem_specific") or {}
    imports = spec.get("imports") or []
    if not imports:
        return True, "the record names no symbols"
    for imp in imports:
        path = imp.get("path", "")
        syms = imp.get("symbols") or []
        if not syms and f"pkg:{path}" in symbols:
            return True, f"package {path} is linked in"
        found = [s for s in syms if f"{path}.{s}" in symbols]
        if found:
            return True, f"{path}.{found[0]} is in the binary"
    names = ", ".join(f"{i.get('path')}.{s}" for i in imports for s in (i.get("symbols") or []))
    return False, f"none of the vulnerable symbols is in the binary's pclntab ({names})"


def _groups(hits: list[tuple[dict[str, Any], dict[str, Any], str]]) -> list[list[int]]:
    """Indices of hits grouped by shared id or alias (aliases are symmetric and transitive)."""
    parent = list(range(len(hits)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, (rec, _, _) in enumerate(hits):
        for name in [rec["id"], *rec.get("aliases", [])]:
            if name in owner:
                parent[find(i)] = find(owner[name])
            else:
                owner[name] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(hits)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _primary(ids: Sequence[str], aliases: Iterable[str]) -> str:
    cves = sorted(a for a in [*ids, *aliases] if a.startswith("CVE-"))
    return cves[0] if cves else sorted(ids)[0]


def match_packages(packages: Iterable[Package], os_info: OSInfo | None,
                   db_path: str | os.PathLike[str], *, only_fixed: bool = False,
                   strict_reachability: bool = False,
                   go_symbols: Mapping[str, frozenset[str]] | None = None) -> MatchResult:
    """Findings (category ``vulnerability``) for every package a live record affects."""
    out = MatchResult()
    with open_db(db_path) as conn:
        for pkg in packages:
            q = package_query(pkg, os_info)
            if q is None:
                continue
            hits = []
            for rec, entry in lookup(conn, q.ecosystems, q.name):
                try:
                    hit, fixed = affects(q.version, entry)
                except ValueError as e:
                    out.warnings.append(ScanWarning(
                        f"vulns: {rec['id']}: cannot order {q.name} {q.version}: {e}",
                        pkg.locations[0] if pkg.locations else "", "vulns", pkg.layer))
                    continue
                if hit:
                    hits.append((rec, entry, fixed))
            for group in _groups(hits):
                f = _finding(pkg, q, [hits[i] for i in group], strict_reachability, go_symbols)
                if f is not None and not (only_fixed and not f.properties["fixed_version"]):
                    out.findings.append(f)
    return out


def _finding(pkg: Package, q: Query, hits: list[tuple[dict[str, Any], dict[str, Any], str]],
             strict: bool, go_symbols: Mapping[str, frozenset[str]] | None) -> Finding | None:
    ids = sorted({rec["id"] for rec, _, _ in hits})
    aliases = sorted({a for rec, _, _ in hits for a in rec.get("aliases", [])} - set(ids))
    rated = [rate(rec, entry) for rec, entry, _ in hits]
    severity, source, score = max(rated, key=lambda r: (r[1] != "unrated", r[0].rank))
    fixes = sorted({fx for _, _, fx in hits if fx})
    cmp = compare_for(q.ecosystems[0]) or semver_compare
    fixed = max(fixes, key=functools.cmp_to_key(cmp)) if fixes else ""
    summary = next((rec.get("summary") for rec, _, _ in hits if rec.get("summary")), "")
    path = pkg.locations[0] if pkg.locations else ""
    props: dict[str, Any] = {
        "ids": ids, "aliases": aliases, "ecosystem": q.ecosystems[0], "name": q.name,
        "installed_version": q.version, "fixed_version": fixed, "severity_source": source,
    }
    if score is not None:
        props["cvss_score"] = score
    if pkg.type == "golang" and go_symbols is not None and path in go_symbols:
        verdicts = [reachable(entry, go_symbols[path]) for _, entry, _ in hits]
        ok = [r for r in verdicts if r[0]]
        props["reachability"] = "reachable" if ok else "not-reachable"
        props["reachability_reason"] = (ok or verdicts)[0][1]
        if not ok and not strict:
            props["original_severity"] = severity.value
            severity = Severity.INFO
    primary = _primary(ids, aliases)
    return Finding(
        rule_id=primary, severity=severity, category=CATEGORY,
        title=f"{primary} in {q.name} {q.version}" + (f": {summary}" if summary else ""),
        location=Location(path=path, layer=pkg.layer),
        description=str(summary or ""), evidence=f"{q.ecosystems[0]}/{q.name}@{q.version}",
        package=pkg.purl, properties=props).with_id()


#: the fact table the ``gobinary`` analyzer fills when asked for symbols (``--vulns``)
SYMBOLS_FACT = "go-symbols"


def match_report(report: Report, db_path: str | os.PathLike[str], *, only_fixed: bool = False,
                 strict_reachability: bool = False) -> Report:
    """The vulnerability step of a scan, shared by ``imgscan.scan(ref, vulns=True)`` and
    ``imgscan scan --vulns``: a copy of ``report`` with one ``vulnerability`` finding per
    (package, vulnerability) and any matching warnings added.

    Go reachability comes from the report's ``go-symbols`` fact (function names the scan
    read from each Go binary); the fact is consumed here, not left in the report, because
    it is tens of thousands of names per binary and means nothing to a reader. Without it
    (a scan run without symbols) Go findings carry no reachability and keep their severity.
    ``DatabaseError`` when the database is missing or of an unknown schema."""
    facts = dict(report.facts)
    rows = facts.pop(SYMBOLS_FACT, [])
    symbols = {r["path"]: frozenset(r.get("symbols", ())) for r in rows if "path" in r}
    res = match_packages(report.packages, report.os, db_path, only_fixed=only_fixed,
                         strict_reachability=strict_reachability,
                         go_symbols=symbols or None)
    findings = sorted([*report.findings, *res.findings],
                      key=lambda f: (-f.severity.rank, f.category, f.rule_id,
                                     f.location.path, f.package, f.id))
    return dataclasses.replace(report, findings=findings,
                               warnings=[*report.warnings, *res.warnings], facts=facts)
