"""The report model: plain frozen values that every analyzer produces and every writer renders.

The JSON writer is this model's canonical form (``Report.to_dict``); its schema lives in
``imgscan/reports/schema/``. Writers never re-analyze, and analyzers never print.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = "1.0.0"


class Severity(str, enum.Enum):
    """Finding severities, comparable by rank (``Severity.HIGH > Severity.LOW``)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls(text.lower())
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown severity {text!r} (one of {names})") from None


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def printable_name(name: str) -> str:
    """A file name as reports show it. Names in a layer tar are bytes; imgscan carries them as
    UTF-8 with ``surrogateescape``, so a byte that is not UTF-8 is a lone surrogate, which no
    encoder (JSON, XML, a terminal) accepts. Each becomes the visible escape ``\\xNN``."""
    if name.isascii():
        return name
    return _UNDECODABLE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", name)


_RANK = {Severity.INFO: 0, Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3,
         Severity.CRITICAL: 4}


@dataclass(frozen=True)
class LayerRef:
    """Which layer something came from: position (0 = base), diff_id and the build step."""

    index: int
    diff_id: str
    created_by: str = ""


@dataclass(frozen=True)
class Location:
    """Where a finding is. ``path`` is absolute in the image (``/etc/shadow``); findings from
    the image config have ``config_key`` (``Env[3]``, ``Labels.foo``, ``history[2]``) instead.
    ``hidden_by`` is set when a later layer deleted or replaced the file: it is still in the
    image tarball and readable by anyone who pulls it. ``paths`` lists every path that reaches
    the same file when it has hard links (``path`` first): one file is one finding, however
    many names it has; empty (and left out of JSON) for a file with one name."""

    path: str = ""
    line: int | None = None
    column: int | None = None
    layer: LayerRef | None = None
    hidden_by: LayerRef | None = None
    config_key: str = ""
    paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", printable_name(self.path))
        if self.paths:
            object.__setattr__(self, "paths", tuple(printable_name(p) for p in self.paths))


@dataclass(frozen=True)
class Finding:
    """One problem found in an image (a secret, a risky permission, a weak binary, ...),
    where it is and how bad; what the gate judges and every writer renders."""

    rule_id: str
    severity: Severity
    category: str  # secret, permissions, elf, config, policy, ...
    title: str
    location: Location = field(default_factory=Location)
    description: str = ""
    evidence: str = ""
    package: str = ""  # purl of the owning package, when known
    properties: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""  # stable identity; filled by ``with_id`` when empty

    def with_id(self) -> Finding:
        """Give the finding a stable id: the same issue in the same place keeps its id across
        scans and rebuilds (line numbers are left out so that an edit above does not move it)."""
        if self.id:
            return self
        loc = self.location
        key = "\0".join(
            [self.rule_id, loc.path, loc.config_key, self.evidence_fingerprint()]
        )
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        return dataclasses.replace(self, id=digest[:16])

    def evidence_fingerprint(self) -> str:
        fp = self.properties.get("fingerprint") if self.properties else None
        return str(fp) if fp else self.evidence


@dataclass(frozen=True)
class Package:
    """An installed package as its database records it.

    ``type`` is the purl type (deb, rpm, apk, pypi, npm, golang, maven, cargo). ``locations``
    are the files the package was read from (the database, a METADATA file, a binary).
    ``files`` are the paths the package owns, when the database lists them; writers do not
    print them, later analyzers use them (which package owns this setuid file?).
    """

    type: str
    name: str
    version: str
    arch: str = ""
    source_name: str = ""
    source_version: str = ""
    licenses: tuple[str, ...] = ()
    purl: str = ""
    locations: tuple[str, ...] = ()
    layer: LayerRef | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not all(loc.isascii() for loc in self.locations):
            object.__setattr__(self, "locations",
                               tuple(printable_name(loc) for loc in self.locations))

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes two records the same installed package in one database."""
        return (self.type, self.name, self.version, self.arch)


@dataclass(frozen=True)
class PackageFiles:
    """The files of a package, from a database file separate from the package record
    (dpkg ``info/<pkg>.list``). The scanner attaches them to the package after merging."""

    type: str
    name: str
    files: tuple[str, ...]
    arch: str = ""


@dataclass(frozen=True)
class ScanWarning:
    """Something that could not be analyzed; the scan went on without it."""

    message: str
    path: str = ""
    analyzer: str = ""
    layer: LayerRef | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", printable_name(self.path))
        object.__setattr__(self, "message", printable_name(self.message))


@dataclass(frozen=True)
class OSInfo:
    """The image's operating system as its os-release file names it."""

    id: str = ""
    version_id: str = ""
    pretty_name: str = ""
    version_codename: str = ""
    id_like: tuple[str, ...] = ()
    source: str = ""  # the file it was read from

    @property
    def family(self) -> str:
        return self.id


@dataclass(frozen=True)
class LayerSummary:
    """One layer as the report lists it: its digests, size, history and what it added."""

    index: int
    diff_id: str
    digest: str = ""
    size: int = 0  # uncompressed bytes
    created_by: str = ""
    created: str = ""
    entries: int = 0
    packages_added: int = 0


@dataclass(frozen=True)
class ImageSummary:
    """The scanned image: names, digests, platform and what its config says of it."""

    name: str = ""
    id: str = ""  # config digest
    digest: str = ""  # manifest digest
    os: str = ""
    architecture: str = ""
    variant: str = ""
    created: str = ""
    size: int = 0
    user: str = ""
    names: tuple[str, ...] = ()
    source: str = ""  # image, dir


@dataclass(frozen=True)
class AnalyzerRef:
    """An analyzer that ran, with its version and distribution (the report's tool list)."""

    name: str
    version: int
    distribution: str = ""


@dataclass
class Report:
    """One scan of one image (or one root filesystem)."""

    tool: Mapping[str, Any]
    image: ImageSummary
    layers: list[LayerSummary] = field(default_factory=list)
    os: OSInfo | None = None
    packages: list[Package] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    warnings: list[ScanWarning] = field(default_factory=list)
    facts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    created: str = ""
    schema_version: str = SCHEMA_VERSION

    def __post_init__(self) -> None:
        for rows in self.facts.values():  # fact rows name files too
            for row in rows:
                if isinstance(row.get("path"), str):
                    row["path"] = printable_name(row["path"])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_jsonable(self)  # a dataclass becomes a dict
        return out


def to_jsonable(value: object, keep_files: bool = False) -> Any:
    """Dataclasses, enums, tuples and mappings to plain JSON values, field order kept.

    ``Package.files`` is left out unless ``keep_files`` (the analysis cache keeps it; reports
    do not, since a distribution's file lists would dwarf everything else)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            if f.name == "files" and isinstance(value, Package) and not keep_files:
                continue
            if f.name == "paths" and isinstance(value, Location) and not value.paths:
                continue  # the 1.0.0 shape for a file with one name
            out[f.name] = to_jsonable(getattr(value, f.name), keep_files)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, keep_files) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, keep_files) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def layer_from_dict(d: Mapping[str, Any] | None) -> LayerRef | None:
    return LayerRef(**d) if d else None


def finding_from_dict(d: Mapping[str, Any]) -> Finding:
    loc = dict(d.get("location") or {})
    loc["layer"] = layer_from_dict(loc.get("layer"))
    loc["hidden_by"] = layer_from_dict(loc.get("hidden_by"))
    loc["paths"] = tuple(loc.get("paths") or ())
    return Finding(
        rule_id=d["rule_id"],
        severity=Severity(d["severity"]),
        category=d["category"],
        title=d["title"],
        location=Location(**loc),
        description=d.get("description", ""),
        evidence=d.get("evidence", ""),
        package=d.get("package", ""),
        properties=d.get("properties") or {},
        id=d.get("id", ""),
    )


def package_from_dict(d: Mapping[str, Any]) -> Package:
    kw = dict(d)
    for k in ("licenses", "locations", "files"):
        kw[k] = tuple(kw.get(k) or ())
    kw["layer"] = layer_from_dict(kw.get("layer"))
    return Package(**kw)


def warning_from_dict(d: Mapping[str, Any]) -> ScanWarning:
    kw = dict(d)
    kw["layer"] = layer_from_dict(kw.get("layer"))
    return ScanWarning(**kw)
