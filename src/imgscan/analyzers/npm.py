"""Installed npm packages: ``package.json`` directly under ``node_modules/<name>/`` or
``node_modules/@scope/<name>/``.

Each copy in a nested ``node_modules`` is its own installed instance with its own location
(FORMATS.md §5.6). ``package.json`` files anywhere else are application manifests or files
inside a package (``lib/package.json``), not installed packages, so ``required`` rejects them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from imgscan.analyzers.interface import AnalysisResult, Analyzer, FileInfo, FileInput
from imgscan.model import Package, ScanWarning

MAX_PACKAGE_JSON = 8 << 20

_INSTALLED = re.compile(r"(?:^|/)node_modules/((?:@[^/@.][^/]*/)?[^/@.][^/]*)/package\.json$")


def install_name(path: str) -> str:
    """The name a package is installed under (``@scope/name``), or '' if the path is not an
    installed package's manifest."""
    m = _INSTALLED.search(path)
    return m.group(1) if m else ""


def _licenses(doc: dict[str, Any]) -> tuple[str, ...]:
    lic = doc.get("license")
    if isinstance(lic, str) and lic.strip():
        return (lic.strip(),)
    if isinstance(lic, dict) and isinstance(lic.get("type"), str):
        return (lic["type"],)
    out = []
    for item in doc.get("licenses") or [] if isinstance(doc.get("licenses"), list) else []:
        if isinstance(item, dict) and isinstance(item.get("type"), str):
            out.append(item["type"])
        elif isinstance(item, str):
            out.append(item)
    return tuple(out)


class NpmAnalyzer(Analyzer):
    name = "npm"
    version = 1
    description = "npm packages installed under node_modules (including global installs)"
    max_read = MAX_PACKAGE_JSON + 1

    def required(self, info: FileInfo) -> bool:
        return (info.is_regular and info.size <= MAX_PACKAGE_JSON
                and bool(install_name(info.path)))

    def analyze(self, file: FileInput) -> AnalysisResult | None:
        path = file.info.abspath
        installed_as = install_name(file.info.path)
        raw = file.read(MAX_PACKAGE_JSON + 1)
        if len(raw) > MAX_PACKAGE_JSON:
            return self._warn(path, "package.json over the size cap")
        try:
            doc = json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return self._warn(path, f"package.json is not JSON: {str(exc)[:120]}")
        if not isinstance(doc, dict):
            return self._warn(path, "package.json is not a JSON object")
        name, version = doc.get("name"), doc.get("version")
        if not isinstance(name, str) or not name.strip():
            name = installed_as  # npm itself falls back to the folder name
        if not isinstance(version, str) or not version.strip():
            return self._warn(path, "package.json has no version")
        meta: dict[str, Any] = {}
        if name != installed_as:
            meta["installed_as"] = installed_as  # an alias (npm i foo@npm:bar) or a mismatch
        for key in ("resolved", "integrity"):
            if isinstance(doc.get("_" + key), str):
                meta[key] = doc["_" + key]
        if doc.get("private") is True:
            meta["private"] = True
        pkg = Package(type="npm", name=name.strip(), version=version.strip(),
                      licenses=_licenses(doc), locations=(path,), metadata=meta)
        return AnalysisResult(packages=[pkg])

    def _warn(self, path: str, msg: str) -> AnalysisResult:
        return AnalysisResult(warnings=[ScanWarning(f"npm: {msg}", path, self.name)])
