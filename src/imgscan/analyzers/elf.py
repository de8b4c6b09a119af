"""ELF hardening: RELRO, stack canary, NX, PIE, FORTIFY, RPATH/RUNPATH, stripped.

Two analyzers, because FORTIFY needs the image's own libc and per-file results are cached
per layer (they may depend on nothing but the file):

* ``ElfAnalyzer`` ("elf", per file) writes one ``facts["elf"]`` row per ELF file (the
  verdicts of ``elfinspect``, plus path, layer, mode, setuid/setgid) and raises the per-file
  findings below.
* ``ElfFortifyPostAnalyzer`` ("elf-fortify", image-wide) finds the image's libc, reads its
  ``_chk`` exports and writes ``facts["elf-fortify"]`` rows keyed by ``path`` with
  ``fortify`` (yes/no/n/a), ``fortified``, ``fortifiable``, ``libc`` and
  ``rpath_world_writable``. The framework merges these into the "elf" rows by path. It also
  raises ``elf/rpath-world-writable``, which needs the image's directory modes.

Rule ids (stable) and severities:

* ``elf/execstack`` -- high when PT_GNU_STACK is executable (the whole process that loads
  the file gets an executable stack, NX is void); medium when a dynamic object has no
  PT_GNU_STACK at all (glibc's loader then defaults to an executable stack).
* ``elf/rpath-insecure`` -- an RPATH/RUNPATH entry that is empty or relative (not ``/``-
  or ``$ORIGIN``-anchored): libraries are then searched relative to the working directory.
  Medium; high for a setuid/setgid file.
* ``elf/rpath-world-writable`` -- an RPATH/RUNPATH directory that is world-writable inside
  the image: anyone in the container can plant a library. High.
* ``elf/setuid-no-pie``, ``elf/setuid-no-nx``, ``elf/setuid-no-canary`` -- a setuid or setgid
  ELF without that mitigation: medium (a privileged binary is the prime exploit target).
* ``elf/setuid-no-full-relro`` -- the same for RELRO other than full: low (partial RELRO
  still protects most of the GOT).

"n/a" and "unknown" verdicts (static, Go, stripped static) never raise a finding.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from imgscan.analyzers.elffile import (
    ELF_MAGIC,
    ElfCandidates,
    ElfError,
    ElfFile,
    elf_of,
    is_elf_candidate,
)
from imgscan.analyzers.elfinspect import fortify_verdict, inspect_elf, libc_chk_functions
from imgscan.analyzers.interface import (
    AnalysisResult,
    Analyzer,
    FileInfo,
    FileInput,
    ImageView,
    PostAnalyzer,
    ViewEntry,
)
from imgscan.model import Finding, LayerRef, Location, OSInfo, Package, ScanWarning, Severity

#: where the post step looks for the image's libc, in order (glibc, then musl by glob)
LIBC_CANDIDATES = (
    "lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libc.so.6",
    "lib/aarch64-linux-gnu/libc.so.6", "usr/lib/aarch64-linux-gnu/libc.so.6",
    "lib64/libc.so.6", "usr/lib64/libc.so.6", "lib/libc.so.6", "usr/lib/libc.so.6",
    "lib/i386-linux-gnu/libc.so.6", "lib/arm-linux-gnueabihf/libc.so.6",
    "lib/powerpc64le-linux-gnu/libc.so.6", "lib/s390x-linux-gnu/libc.so.6",
)
MUSL_DIRS = ("lib/", "usr/lib/")

_CATEGORY = "elf"


def rpath_entry_insecure(entry: str) -> bool:
    """Empty or relative (resolved against the working directory at run time)."""
    if entry == "":
        return True
    return not (entry.startswith("/") or entry.startswith(("$ORIGIN", "${ORIGIN}")))


def _loc(info: FileInfo, layer: LayerRef | None) -> Location:
    return Location(path=info.abspath, layer=layer)


def row_for(info: FileInfo, layer: LayerRef | None, facts: dict[str, Any]) -> dict[str, Any]:
    """One ``facts["elf"]`` row: the ELF verdicts plus where the file is and its mode."""
    return {
        "path": info.abspath,
        "layer": layer.index if layer is not None else None,
        "mode": f"{info.mode & 0o7777:04o}",
        "setuid": bool(info.mode & 0o4000),
        "setgid": bool(info.mode & 0o2000),
        **facts,
    }


def findings_for(info: FileInfo, layer: LayerRef | None, facts: dict[str, Any]) -> list[Finding]:
    """Per-file findings (see the module docstring for the rules)."""
    out: list[Finding] = []
    loc = _loc(info, layer)
    privileged = bool(info.mode & 0o6000)
    if facts["execstack"] and not (facts["static"] and not facts["gnu_stack"]):
        explicit = facts["gnu_stack"]
        out.append(Finding(
            rule_id="elf/execstack",
            severity=Severity.HIGH if explicit else Severity.MEDIUM,
            category=_CATEGORY,
            title="Executable stack" if explicit else "No PT_GNU_STACK: stack may be executable",
            location=loc,
            description="Any process that runs or loads this file gets an executable stack, "
                        "so NX does not stop injected code.",
            evidence="PT_GNU_STACK has PF_X" if explicit else "PT_GNU_STACK missing",
        ))
    for tag in ("rpath", "runpath"):
        bad = [e for e in facts[tag] if rpath_entry_insecure(e)]
        if bad:
            shown = ":".join(facts[tag])
            out.append(Finding(
                rule_id="elf/rpath-insecure",
                severity=Severity.HIGH if privileged else Severity.MEDIUM,
                category=_CATEGORY,
                title=f"Relative or empty {tag.upper()} entry",
                location=loc,
                description="Libraries are searched relative to the working directory, where "
                            "whoever runs the program may plant one.",
                evidence=f"{tag.upper()}={shown}",
                properties={"entries": bad, "fingerprint": f"{tag}:{shown}"},
            ))
    if privileged:
        bits = "setuid" if info.mode & 0o4000 else "setgid"
        checks = (
            ("pie", facts["pie"] == "no", "elf/setuid-no-pie", Severity.MEDIUM, "without PIE"),
            ("nx", facts["nx"] == "no", "elf/setuid-no-nx", Severity.MEDIUM, "without NX"),
            ("canary", facts["canary"] == "no", "elf/setuid-no-canary", Severity.MEDIUM,
             "without stack canary"),
            ("relro", facts["relro"] in ("no", "partial"), "elf/setuid-no-full-relro",
             Severity.LOW, "without full RELRO"),
        )
        for key, bad_verdict, rule, sev, what in checks:
            if bad_verdict:
                out.append(Finding(
                    rule_id=rule, severity=sev, category=_CATEGORY,
                    title=f"{bits} binary {what}", location=loc,
                    evidence=f"mode {info.mode & 0o7777:04o}, {key}={facts[key]}",
                ))
    return out


class ElfAnalyzer(ElfCandidates, Analyzer):
    """Per-file ELF hardening (see the module docstring)."""

    name: ClassVar[str] = "elf"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "ELF hardening: RELRO, canary, NX, PIE, RPATH, FORTIFY inputs"
    def analyze(self, file: FileInput) -> AnalysisResult | None:
        info = file.info
        try:
            elf = elf_of(file)
            if elf is None:
                return None
            facts = inspect_elf(elf)
        except (ElfError, OSError) as e:
            return AnalysisResult(warnings=[ScanWarning(
                message=f"malformed ELF: {e}", path=info.abspath, analyzer=self.name,
                layer=file.layer)])
        return AnalysisResult(
            findings=findings_for(info, file.layer, facts),
            facts={"elf": [row_for(info, file.layer, facts)]},
        )


def find_libc(view: ImageView) -> ViewEntry | None:
    """The image's C library: the first glibc candidate path that resolves to a regular
    file, else a musl ``ld-musl-*.so.1`` (musl exports no ``_chk`` functions)."""
    for cand in LIBC_CANDIDATES:
        entry = view.resolve(cand)
        if entry is not None and entry.info.is_regular:
            return entry
    for entry in view.entries():
        p = entry.info.path
        if p.startswith(MUSL_DIRS) and posixpath.basename(p).startswith("ld-musl-"):
            resolved = view.resolve(p)
            if resolved is not None and resolved.info.is_regular:
                return resolved
    return None


def world_writable_rpaths(view: ImageView, path: str, entries: Iterable[str]) -> list[str]:
    """RPATH/RUNPATH directories (``$ORIGIN`` expanded) that are world-writable in the image;
    absolute entries are resolved inside the image root, relative ones are skipped (they
    are ``elf/rpath-insecure`` already)."""
    origin = posixpath.dirname(path.lstrip("/"))
    out = []
    for e in entries:
        for tok in ("${ORIGIN}", "$ORIGIN"):
            if e.startswith(tok):
                e = "/" + origin + e[len(tok):]
        if not e.startswith("/"):
            continue
        rel = posixpath.normpath(e).lstrip("/")
        entry = view.resolve(rel) if rel else None
        if entry is not None and entry.info.mode & 0o002 and entry.info.kind.value == "dir":
            out.append(e)
    return out


class ElfFortifyPostAnalyzer(PostAnalyzer):
    """FORTIFY against the image's own libc, and world-writable RPATH dirs (image-wide).

    In a scan the framework hands over the "elf" rows (``facts_wanted``), so nothing is read
    twice. Called on its own (a library user, a test), it has no rows and reads the ELF
    files of the view itself. ``finalize`` is the pure half both paths share.
    """

    name: ClassVar[str] = "elf-fortify"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "FORTIFY_SOURCE against the image libc; world-writable RPATH"
    facts_wanted: ClassVar[tuple[str, ...]] = ("elf",)
    refines: ClassVar[str | None] = "elf"
    reads: ClassVar[tuple[str, ...]] = (*LIBC_CANDIDATES, "lib/ld-musl-*", "usr/lib/ld-musl-*",
                                        "lib*/libc-*.so", "usr/lib*/libc-*.so",
                                        "lib/*/libc-*.so", "usr/lib/*/libc-*.so")

    def post_analyze(
        self, view: ImageView, packages: Sequence[Package], os: OSInfo | None
    ) -> AnalysisResult:
        rows = getattr(self, "facts", {}).get("elf")
        if rows is not None:
            entries = {row["path"]: e for row in rows
                       if (e := view.lookup(row["path"])) is not None}
        else:
            rows, entries = self._read_rows(view)
        final, findings, warnings = self.finalize(rows, view, entries)
        return AnalysisResult(findings=findings, warnings=warnings,
                              facts={"elf-fortify": final})

    @staticmethod
    def _read_rows(view: ImageView) -> tuple[list[dict[str, Any]], dict[str, ViewEntry]]:
        """"elf"-shaped rows for the view's ELF files, when no scan handed them over."""
        rows: list[dict[str, Any]] = []
        entries: dict[str, ViewEntry] = {}
        for entry in view.entries():
            info = entry.info
            if not is_elf_candidate(info):
                continue
            try:
                with view.open(entry) as f:
                    if f.read(4) != ELF_MAGIC:
                        continue
                    facts = inspect_elf(ElfFile.parse(f))
            except (ElfError, OSError):
                continue  # the "elf" analyzer warns about this file already
            entries[info.abspath] = entry
            rows.append({"path": info.abspath, **facts})
        return rows, entries

    def finalize(
        self,
        rows: Sequence[dict[str, Any]],
        view: ImageView,
        entries: dict[str, ViewEntry] | None = None,
    ) -> tuple[list[dict[str, Any]], list[Finding], list[ScanWarning]]:
        """elf-fortify rows (keyed by path), findings and warnings from "elf"-shaped rows."""
        warnings: list[ScanWarning] = []
        libc = find_libc(view)
        libc_chk: set[str] = set()
        libc_path = ""
        if libc is not None:
            libc_path = libc.info.abspath
            try:
                with view.open(libc) as f:
                    libc_chk = libc_chk_functions(ElfFile.parse(f))
            except (ElfError, OSError) as e:
                warnings.append(ScanWarning(message=f"cannot read libc: {e}", path=libc_path,
                                            analyzer=self.name, layer=libc.layer))
        out: list[dict[str, Any]] = []
        findings: list[Finding] = []
        for row in rows:
            applicable = not (row.get("static") or row.get("go"))
            verdict = fortify_verdict(row.get("fortify_chk", ()), row.get("fortify_plain", ()),
                                      libc_chk, applicable)
            ww = world_writable_rpaths(view, row["path"],
                                       list(row.get("rpath", ())) + list(row.get("runpath", ())))
            out.append({"path": row["path"], **verdict, "libc": libc_path,
                        "rpath_world_writable": ww})
            if ww:
                entry = (entries or {}).get(row["path"])
                findings.append(Finding(
                    rule_id="elf/rpath-world-writable",
                    severity=Severity.HIGH,
                    category=_CATEGORY,
                    title="RPATH/RUNPATH directory is world-writable",
                    location=Location(path=row["path"],
                                      layer=entry.layer if entry is not None else None),
                    description="Anyone in the container can plant a library that this "
                                "program will load.",
                    evidence=":".join(ww),
                ))
        return out, findings, warnings
