"""The pure steps of assembling a report from per-layer results: fact tables that refine
one another, package file lists attached to their packages, and the canonical orders of
packages, findings and fact rows (two scans of one image list everything alike)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from imgscan.model import Finding, Package


def refine_facts(facts: dict[str, list[dict[str, Any]]], update: str, target: str) -> None:
    """Merge the rows of table ``update`` into table ``target`` by path; drop ``update``."""
    rows = facts.pop(update, None)
    if not rows or target not in facts:
        return
    by_path = {r.get("path"): r for r in rows}
    facts[target] = [{**r, **by_path.get(r.get("path"), {})} for r in facts[target]]


def fact_order(row: dict[str, Any]) -> tuple[str, str]:
    """Fact rows by path, then by content: two rows of one path (a setuid file and the
    hidden one beneath it) keep one order whichever layer's worker finished first."""
    return str(row.get("path", "")), repr(sorted(row.items(), key=lambda kv: kv[0]))


def attach_files(packages: Sequence[Package], files: Sequence[Any]) -> list[Package]:
    if not files:
        return list(packages)
    by_key: dict[tuple[str, str, str], list[str]] = {}
    by_name: dict[tuple[str, str], list[str]] = {}
    for pf in files:
        by_key.setdefault((pf.type, pf.name, pf.arch), []).extend(pf.files)
        by_name.setdefault((pf.type, pf.name), []).extend(pf.files)
    out = []
    for p in packages:
        extra = by_key.get((p.type, p.name, p.arch)) or by_name.get((p.type, p.name))
        if extra:
            p = replace(p, files=tuple(sorted(set(p.files) | set(extra))))
        out.append(p)
    return out


def package_order(p: Package) -> tuple[Any, ...]:
    return (p.type, p.name, p.version, p.arch, p.locations)


def finding_order(f: Finding) -> tuple[Any, ...]:
    return (-f.severity.rank, f.category, f.rule_id, f.location.path,
            f.location.config_key, f.location.line or 0, f.id)
